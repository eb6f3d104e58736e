// Package lru is a least-recently-used cache bounded by bytes, safe for
// concurrent use: the read path's caches of record parts (sink/split) and
// decoded records (serve).
package lru

import (
	"container/list"
	"sync"
)

// Cache maps keys to values, each with a size; when the sizes pass the
// bound, the least recently used entries go.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	bytes int
	order *list.List // front: most recent
	items map[K]*list.Element
}

type item[K comparable, V any] struct {
	key  K
	val  V
	size int
}

// New returns a cache of at most maxBytes; 0 or less keeps nothing.
func New[K comparable, V any](maxBytes int) *Cache[K, V] {
	return &Cache[K, V]{max: maxBytes, order: list.New(), items: map[K]*list.Element{}}
}

// Get returns the value under k and marks it used.
func (c *Cache[K, V]) Get(k K) (v V, ok bool) {
	if c == nil {
		return v, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return v, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*item[K, V]).val, true
}

// Put stores v under k, replacing what was there. A value bigger than
// the whole cache is not kept.
func (c *Cache[K, V]) Put(k K, v V, size int) {
	if c == nil || size > c.max {
		c.Remove(k)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		it := e.Value.(*item[K, V])
		c.bytes += size - it.size
		it.val, it.size = v, size
		c.order.MoveToFront(e)
	} else {
		c.items[k] = c.order.PushFront(&item[K, V]{k, v, size})
		c.bytes += size
	}
	for c.bytes > c.max {
		e := c.order.Back()
		it := e.Value.(*item[K, V])
		c.order.Remove(e)
		delete(c.items, it.key)
		c.bytes -= it.size
	}
}

// Remove drops k.
func (c *Cache[K, V]) Remove(k K) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.bytes -= e.Value.(*item[K, V]).size
		c.order.Remove(e)
		delete(c.items, k)
	}
}

// Len and Bytes report how many entries and bytes the cache holds.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

func (c *Cache[K, V]) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

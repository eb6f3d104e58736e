package connector

import (
	"container/list"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// entry is a record as the store has it (or will, once the batch that
// changed it is durable).
type entry struct {
	key   sink.Key
	state *transform.State
	gen   uint32
}

// cache keeps the most recently used records decoded, so a hot entity is
// not read back from the store on every batch. tilefeed is the only writer
// of its records; a write that fails drops the batch's entries.
type cache struct {
	max   int
	order *list.List // front: most recent
	byKey map[sink.Key]*list.Element
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), byKey: make(map[sink.Key]*list.Element)}
}

func (c *cache) get(k sink.Key) *entry {
	el := c.byKey[k]
	if el == nil {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry)
}

func (c *cache) put(e *entry) {
	if el := c.byKey[e.key]; el != nil {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.byKey[e.key] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*entry).key)
	}
}

func (c *cache) drop(k sink.Key) {
	if el := c.byKey[k]; el != nil {
		c.order.Remove(el)
		delete(c.byKey, k)
	}
}

func (c *cache) len() int { return c.order.Len() }

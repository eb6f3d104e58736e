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
	size  int // state.MemSize() when last counted
}

// cache keeps the most recently used records in memory, so a hot entity is
// not read back from the store on every batch. It is bounded by records and
// by bytes (State.MemSize: records keep their tiles in stored form, so this
// is close to their stored size). tilefeed is the only writer of its
// records; a write that fails drops the batch's entries.
type cache struct {
	max, maxBytes int
	bytes         int
	order         *list.List // front: most recent
	byKey         map[sink.Key]*list.Element
}

func newCache(max, maxBytes int) *cache {
	return &cache{max: max, maxBytes: maxBytes, order: list.New(), byKey: make(map[sink.Key]*list.Element)}
}

func (c *cache) get(k sink.Key) *entry {
	el := c.byKey[k]
	if el == nil {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry)
}

// put adds e, or counts its size again when it is there (its state changed).
func (c *cache) put(e *entry) {
	if el := c.byKey[e.key]; el != nil {
		old := el.Value.(*entry)
		c.bytes -= old.size
		el.Value = e
		c.order.MoveToFront(el)
	} else {
		c.byKey[e.key] = c.order.PushFront(e)
	}
	e.size = e.state.MemSize()
	c.bytes += e.size
	// The newest entry stays even when it alone is over the bound: the
	// batch in hand uses it.
	for c.order.Len() > 1 && (c.order.Len() > c.max || c.bytes > c.maxBytes) {
		c.remove(c.order.Back())
	}
}

func (c *cache) remove(el *list.Element) {
	e := el.Value.(*entry)
	c.order.Remove(el)
	delete(c.byKey, e.key)
	c.bytes -= e.size
}

func (c *cache) drop(k sink.Key) {
	if el := c.byKey[k]; el != nil {
		c.remove(el)
	}
}

func (c *cache) len() int { return c.order.Len() }

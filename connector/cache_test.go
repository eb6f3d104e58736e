package connector

import (
	"fmt"
	"testing"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// TestCacheBoundedInBytes: the cache drops its least recently used records
// once their bytes pass the bound, keeps the count of bytes right across
// replacements and drops, and always keeps the newest record.
func TestCacheBoundedInBytes(t *testing.T) {
	t.Parallel()
	row := func(n int) *transform.State {
		return &transform.State{Row: map[string]any{"v": string(make([]byte, n))}}
	}
	size := row(1000).MemSize()
	c := newCache(1000, 3*size+size/2)
	key := func(i int) sink.Key { return sink.Key{Set: "g", ID: fmt.Sprint(i)} }
	for i := range 5 {
		c.put(&entry{key: key(i), state: row(1000)})
	}
	if c.len() != 3 || c.bytes != 3*size {
		t.Fatalf("after 5 puts: %d records, %d bytes; want 3 records, %d bytes", c.len(), c.bytes, 3*size)
	}
	for i, want := range []bool{false, false, true, true, true} {
		if got := c.get(key(i)) != nil; got != want {
			t.Errorf("record %d cached: %v, want %v", i, got, want)
		}
	}
	// 2 is the least recently used now; a record grown in place is
	// counted again when it is put back.
	e := c.get(key(3))
	e.state = row(2000)
	c.put(e)
	if c.get(key(2)) != nil || c.len() != 2 || c.bytes != size+row(2000).MemSize() {
		t.Errorf("after growing record 3: %d records, %d bytes", c.len(), c.bytes)
	}
	c.drop(key(4))
	c.drop(key(4))
	if c.len() != 1 || c.bytes != row(2000).MemSize() {
		t.Errorf("after drops: %d records, %d bytes", c.len(), c.bytes)
	}
	// One record bigger than the bound stays: the batch in hand needs it.
	c.put(&entry{key: key(9), state: row(10 * size)})
	if c.len() != 1 || c.get(key(9)) == nil {
		t.Errorf("an oversized record: %d records", c.len())
	}
	// The count bound holds too.
	c = newCache(2, 1<<30)
	for i := range 4 {
		c.put(&entry{key: key(i), state: row(10)})
	}
	if c.len() != 2 || c.get(key(3)) == nil || c.get(key(1)) != nil {
		t.Errorf("count bound: %d records", c.len())
	}
}

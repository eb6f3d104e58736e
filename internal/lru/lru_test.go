package lru

import "testing"

func TestBoundedByBytes(t *testing.T) {
	c := New[string, int](10)
	c.Put("a", 1, 4)
	c.Put("b", 2, 4)
	if _, ok := c.Get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.Put("c", 3, 4) // over 10: b, the least recent, goes
	if _, ok := c.Get("b"); ok {
		t.Error("b kept over the bound")
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Errorf("a = %v, %v", v, ok)
	}
	if c.Bytes() != 8 || c.Len() != 2 {
		t.Errorf("%d bytes in %d entries, want 8 in 2", c.Bytes(), c.Len())
	}
	c.Put("a", 7, 7) // replaced, resized to 11 in all: c, the least recent, goes
	if v, _ := c.Get("a"); v != 7 || c.Bytes() != 7 {
		t.Errorf("after resize: a = %d, %d bytes", v, c.Bytes())
	}
	if _, ok := c.Get("c"); ok {
		t.Error("c kept over the bound")
	}
	c.Put("huge", 0, 11)
	if _, ok := c.Get("huge"); ok || c.Bytes() != 7 {
		t.Error("a value over the whole bound was kept")
	}
	var off *Cache[string, int]
	off.Put("x", 1, 1)
	if _, ok := off.Get("x"); ok {
		t.Error("a nil cache keeps values")
	}
}

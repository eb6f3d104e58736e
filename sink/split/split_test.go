package split

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded"
)

// TestMalformedParts: a head whose _parts bin is not a map of part lists
// is a clear error naming the record, never a crash or a silent drop.
func TestMalformedParts(t *testing.T) {
	inner, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	ctx := context.Background()
	bad := []any{
		"not a map",
		map[any]any{"_t60": "not a list"},
		map[any]any{"_t60": []any{int64(3)}},
		map[any]any{int64(1): []any{"abc"}},
	}
	for i, v := range bad {
		k := sink.Key{Set: "g", ID: string(rune('a' + i))}
		if err := inner.Put(ctx, []sink.Record{{Key: k, Bins: map[string]any{"_lsn": int64(1), binParts: v}}}); err != nil {
			t.Fatal(err)
		}
		_, err := New(inner, Options{}).Get(ctx, []sink.Key{k})
		if err == nil || !strings.Contains(err.Error(), "record "+k.String()) {
			t.Errorf("_parts %v: %v, want an error naming record %s", v, err, k)
		}
	}
	// A head naming a part that is not there: an error after re-reading.
	k := sink.Key{Set: "g", ID: "lost"}
	if err := inner.Put(ctx, []sink.Record{{Key: k, Bins: map[string]any{binParts: map[any]any{"_t60": []any{"00"}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(inner, Options{}).Get(ctx, []sink.Key{k}); err == nil || !strings.Contains(err.Error(), "names parts that are not in the store") {
		t.Errorf("a lost part: %v", err)
	}
}

package embedded

import (
	"path/filepath"
	"testing"

	"github.com/tilefeed/tilefeed/sink/sinktest"
)

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Store {
		s, err := Open(filepath.Join(t.TempDir(), "store.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceSplit(t *testing.T) {
	sinktest.RunSplit(t, func(t *testing.T) sinktest.Store {
		s, err := Open(filepath.Join(t.TempDir(), "store.db"), Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/config"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// debug.pprof.listen serves Go's profiler on its own listener, never on
// the API's; the API names its connector and store in every answer.
func TestListeners(t *testing.T) {
	pprofAddr := freeAddr(t)
	c, err := config.Parse([]byte(`{"name": "p", "config": {"tilefeed.source": "http", "http.listen": "127.0.0.1:0",
		"embedded.path": "`+filepath.Join(t.TempDir(), "s.db")+`", "debug.pprof.listen": "`+pprofAddr+`"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan Running, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), func(r Running) { started <- r })
	}()
	var r Running
	select {
	case r = <-started:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + pprofAddr + "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("profiler: %d %.200s", code, body)
	}
	if code, body := get("http://" + pprofAddr + "/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile: %d %.200s", code, body)
	}
	if code, _ := get("http://" + r.Addr + "/debug/pprof/"); code == 200 {
		t.Error("the API listener serves the profiler")
	}
	// Every answer names its connector and store, for `tilefeed get`.
	resp, err := http.Get("http://" + r.Addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(HeaderConnector) != "p" || resp.Header.Get(HeaderStore) != StoreIdentity(c) || !strings.HasPrefix(StoreIdentity(c), "embedded ") {
		t.Errorf("identity headers %q %q, want %q %q", resp.Header.Get(HeaderConnector), resp.Header.Get(HeaderStore), "p", StoreIdentity(c))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if _, err := net.Dial("tcp", pprofAddr); err == nil {
		t.Error("the profiler still listens after Run returned")
	}

	if _, err := config.Parse([]byte(`{"name": "p", "config": {"tilefeed.source": "http", "debug.pprof.listen": "6060"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`), func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), "debug.pprof.listen") {
		t.Errorf("a bad debug.pprof.listen: %v", err)
	}
}

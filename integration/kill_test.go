package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// buildBinary builds cmd/tilefeed as it ships (no race detector: the
// in-process tests run under -race; these measure the real thing).
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tilefeed")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tilefeed/tilefeed/cmd/tilefeed")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// newProcess writes the connector file and returns the binary's process,
// not yet started.
func newProcess(t *testing.T, raw []byte, listen string) *process {
	t.Helper()
	file := filepath.Join(t.TempDir(), "connector.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "tilefeed.log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, bin: buildBinary(t), file: file, listen: listen, logs: logs}
	t.Cleanup(func() {
		if p.cmd != nil && p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGKILL) // never leave one running
			_ = p.cmd.Wait()
		}
	})
	return p
}

// process is the real tilefeed binary.
type process struct {
	t      *testing.T
	bin    string
	file   string
	listen string
	cmd    *exec.Cmd
	logs   *os.File
}

func (p *process) start() {
	p.t.Helper()
	p.spawn(nil)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("tilefeed did not come up within 60s; log:\n%s", p.log())
}

func (p *process) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// term stops the process with SIGTERM and returns its exit code.
func (p *process) term() int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.kill()
		p.t.Fatalf("tilefeed did not stop within 60s of SIGTERM; log:\n%s", p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) log() string {
	b, _ := os.ReadFile(p.logs.Name())
	return string(b)
}

// read reads features over the HTTP API, as a client would.
func (p *process) read(group, key string, at time.Time) (bool, map[string]any, error) {
	q := url.Values{"at": {at.Format(time.RFC3339Nano)}}
	switch group {
	case "card_activity":
		q.Set("card_id", key)
	case "bulk", "readings":
		q.Set("k", key)
	default:
		q.Set("id", key)
	}
	resp, err := http.Get("http://" + p.listen + "/v1/features/" + group + "?" + q.Encode())
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, nil, fmt.Errorf("GET features: %s", resp.Status)
	}
	var body struct {
		Found    bool           `json:"found"`
		Features map[string]any `json:"features"`
	}
	d := json.NewDecoder(resp.Body)
	d.UseNumber()
	if err := d.Decode(&body); err != nil {
		return false, nil, err
	}
	return body.Found, body.Features, nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestKillAndRestart runs the real binary and kills it with SIGKILL at
// seeded random moments while the workload runs, then stops it with
// SIGTERM: the features equal SQL afterwards, and SIGTERM exits 0.
func TestKillAndRestart(t *testing.T) {
	conn, db := newDB(t)
	listen := freeAddr(t)
	killAndRestart(t, conn, connectorJSON(db, storePath(t), listen), listen)
}

// TestKillAndRestartAerospike is TestKillAndRestart on a real Aerospike.
func TestKillAndRestartAerospike(t *testing.T) {
	conn, db := newDB(t)
	listen := freeAddr(t)
	raw := connectorJSON(db, storePath(t), listen)
	c := loadConnector(t, raw)
	withAerospike(t, c)
	raw = []byte(strings.Replace(string(raw), `"embedded.path"`, fmt.Sprintf(`"aerospike.hosts": %q, "aerospike.namespace": %q, "unused.path"`,
		strings.Join(c.Sink.Aerospike.Hosts, ","), c.Sink.Aerospike.Namespace), 1))
	killAndRestart(t, conn, raw, listen)
}

func killAndRestart(t *testing.T, conn *pgx.Conn, raw []byte, listen string) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	// The cluster trusts local connections, so a password is accepted and
	// ignored: it is here to prove it never shows in logs or status.
	const secret = "s3cret-Kx9-must-not-leak"
	raw = []byte(strings.Replace(string(raw), `"database.user"`, `"database.password": "`+secret+`", "database.user"`, 1))
	var p0 *process
	defer func() {
		if p0 != nil && strings.Contains(p0.log(), secret) {
			t.Error("the password appears in the log")
		}
	}()
	p := newProcess(t, raw, listen)
	p0 = p
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TILEFEED_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (TILEFEED_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	w := newWorkload(conn, seed)
	const kills = 5
	p.start()
	for i := 0; i < kills; i++ {
		w.run(t, 20+rng.IntN(60))
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		p.kill()
		w.run(t, rng.IntN(30)) // while it is down
		p.start()
	}
	w.run(t, 50)
	waitSync(t, conn, p.read, 1)
	verify(t, conn, p.read, soon(), w.cards)
	for _, path := range []string{"/v1/status", "/metrics", "/readyz"} {
		resp, err := http.Get("http://" + p.listen + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), secret) {
			t.Errorf("the password appears in %s", path)
		}
	}
	if code := p.term(); code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0; log:\n%s", code, p.log())
	}
	if t.Failed() {
		t.Logf("tilefeed log:\n%s", lastLines(p.log(), 80))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

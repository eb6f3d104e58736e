package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tilefeed/tilefeed/cmd/internal/app"
	"github.com/tilefeed/tilefeed/sink/embedded"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "connector.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const secret = "pw-Zx81-never-print-me"

func connector(t *testing.T, port int, extra string) string {
	return `{"name": "cli", "config": {"plugin.name": "pgoutput", "database.hostname": "127.0.0.1",
		"database.port": ` + strconv.Itoa(port) + `, "database.user": "u", "database.password": "` + secret + `",
		"database.dbname": "d", "snapshot.mode": "no_data", "embedded.path": "` + filepath.Join(t.TempDir(), "s.db") + `",
		"http.listen": "127.0.0.1:0"` + extra + `},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	code, out, errs := runCLI("validate", "-c", writeFile(t, connector(t, 5432, `, "tombstones.on.delete": "false"`)))
	if code != 0 || !strings.Contains(out, "1 feature groups, OK") || !strings.Contains(out, "tombstones.on.delete") {
		t.Errorf("valid file: exit %d, out %q, err %q", code, out, errs)
	}
	bad := `{"name": "x", "config": {"database.port": "99999", "snapshot.mode": "custom"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "aggregations": [{"name": "a", "function": "median", "window": "3x"}]}]}`
	code, _, errs = runCLI("validate", "-c", writeFile(t, bad))
	if code != 1 {
		t.Errorf("bad file: exit %d", code)
	}
	for _, want := range []string{"config.plugin.name", "config.database.hostname: is required", "config.database.port: 99999 is out of range",
		"config.snapshot.mode", `features[0].aggregations[0].function: "median"`, `features[0].aggregations[0].window: "3x" is not a duration`} {
		if !strings.Contains(errs, want) {
			t.Errorf("bad file: output lacks %q:\n%s", want, errs)
		}
	}
}

// TestRunFailureKeepsSecrets: a connection failure is reported clearly and
// the password appears nowhere.
func TestRunFailureKeepsSecrets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	code, out, errs := runCLI("run", "-c", writeFile(t, connector(t, port, "")))
	if code != 1 || !strings.Contains(errs, "connect to PostgreSQL at 127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
	if strings.Contains(out+errs, secret) {
		t.Errorf("the password leaked:\n%s%s", out, errs)
	}
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCLI(); code != 2 {
		t.Errorf("no args: exit %d", code)
	}
	if code, _, errs := runCLI("run"); code != 2 || !strings.Contains(errs, "-c FILE is required") {
		t.Errorf("run without -c: exit %d %q", code, errs)
	}
	if code, out, _ := runCLI("config-reference"); code != 0 || !strings.Contains(out, "`slot.name`") {
		t.Errorf("config-reference: exit %d", code)
	}
}

// TestFlagsAnywhere: flags may follow the other arguments, as the README
// writes `get -c FILE GROUP KEY=V -at T`.
func TestFlagsAnywhere(t *testing.T) {
	file := writeFile(t, connector(t, 5432, ""))
	code, _, errs := runCLI("get", "-c", file, "g", "id=1", "-at", "not-a-time")
	if code != 1 || !strings.Contains(errs, `-at "not-a-time" is not an RFC 3339 time`) {
		t.Errorf("-at after the key: exit %d, %s", code, errs)
	}
	code, _, errs = runCLI("get", "g", "-c", file, "id=1", "-at", "2026-01-01T00:00:00Z")
	if code != 1 || !strings.Contains(errs, "embedded store") {
		t.Errorf("flags between the arguments: exit %d, %s", code, errs)
	}
	if code, _, errs = runCLI("validate", "-c", file, "extra"); code != 2 || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("validate with an argument: exit %d, %s", code, errs)
	}
}

// TestNameFlag: a flat property map without a name (Kafka Connect's
// PUT /connectors/{name}/config body) takes -name, or the file's name.
func TestNameFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "orders.json")
	body := `{"plugin.name": "pgoutput", "database.hostname": "127.0.0.1", "database.user": "u", "database.dbname": "d",
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("validate", "-c", file)
	if code != 0 || !strings.Contains(out, `using "orders" from the file name orders.json`) {
		t.Errorf("no name: exit %d, out %q, err %q", code, out, errs)
	}
	code, out, errs = runCLI("validate", "-c", file, "-name", "orders-v2")
	if code != 0 || strings.Contains(out, "from the file name") {
		t.Errorf("-name: exit %d, out %q, err %q", code, out, errs)
	}
}

// TestGetChecksTheConnector: `get` uses an answer from http.listen only
// when it comes from the same connector and store; another connector's
// answer (two connectors on one host) is not taken, and the store is read.
func TestGetChecksTheConnector(t *testing.T) {
	store := emptyStore(t)
	var name, where string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(app.HeaderConnector, name)
		w.Header().Set(app.HeaderStore, where)
		if r.URL.Query().Get("id") == "bad" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error": "entity column id of group g is integer: \"bad\" is not one"}`)
			return
		}
		io.WriteString(w, `{"served-by": "the listener"}`)
	}))
	defer srv.Close()
	listen := strings.TrimPrefix(srv.URL, "http://")
	file := writeFile(t, `{"name": "mine", "config": {"plugin.name": "pgoutput", "database.hostname": "h", "database.user": "u", "database.dbname": "d",
		"embedded.path": "`+store+`", "http.listen": "`+listen+`"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`)

	name, where = "other", "embedded /elsewhere/other.db"
	code, out, errs := runCLI("get", "-c", file, "g", "id=1")
	if code != 0 || strings.Contains(out, "the listener") || !strings.Contains(out, `"found": false`) {
		t.Errorf("another connector's listener: exit %d, out %s, err %s", code, out, errs)
	}
	name, where = "mine", "embedded "+store
	code, out, errs = runCLI("get", "-c", file, "g", "id=1")
	if code != 0 || !strings.Contains(out, "the listener") {
		t.Errorf("its own listener: exit %d, out %s, err %s", code, out, errs)
	}
	// Its own connector's refusal is the answer: no fallback to the store.
	code, out, errs = runCLI("get", "-c", file, "g", "id=bad")
	if code != 1 || !strings.Contains(errs, `entity column id of group g is integer: "bad" is not one`) {
		t.Errorf("a key its connector refuses: exit %d, out %s, err %s", code, out, errs)
	}
}

// TestGetBadKey: a key value its column's declared type cannot hold is an
// error naming the column, not "found": false.
func TestGetBadKey(t *testing.T) {
	file := writeFile(t, `{"name": "k", "config": {"tilefeed.source": "file", "file.path": "x.ndjson", "embedded.path": "`+emptyStore(t)+`", "http.listen": "127.0.0.1:1"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"], "columns": {"id": "bigint", "v": "text"}}]}`)
	code, out, errs := runCLI("get", "-c", file, "g", "id=abc")
	if code != 1 || !strings.Contains(errs, `entity column id of group g is bigint: "abc" is not one`) {
		t.Errorf("exit %d, out %s, err %s", code, out, errs)
	}
	if code, out, errs = runCLI("get", "-c", file, "g", "id=7"); code != 0 || !strings.Contains(out, `"found": false`) {
		t.Errorf("a good key: exit %d, out %s, err %s", code, out, errs)
	}
}

// TestSecretsOnlyWhereNeeded: a reference a command does not use may be
// unresolvable: get reads the store without the database password,
// validate checks the file offline; validate -live and run need it.
func TestSecretsOnlyWhereNeeded(t *testing.T) {
	store := emptyStore(t)
	file := writeFile(t, `{"name": "s", "config": {"plugin.name": "pgoutput", "database.hostname": "127.0.0.1", "database.user": "u",
		"database.dbname": "d", "database.password": "${env:TILEFEED_TEST_UNSET_PW}", "embedded.path": "`+store+`", "http.listen": "127.0.0.1:1"},
		"features": [{"name": "g", "table": "t", "entity": ["id"], "project": ["v"]}]}`)
	code, out, errs := runCLI("get", "-c", file, "g", "id=1")
	if code != 0 || !strings.Contains(out, `"found": false`) {
		t.Errorf("get without the database password: exit %d, out %s, err %s", code, out, errs)
	}
	code, out, errs = runCLI("validate", "-c", file)
	if code != 0 || !strings.Contains(out, "config.database.password: ${env:TILEFEED_TEST_UNSET_PW}: environment variable is not set (unused by this command)") {
		t.Errorf("validate: exit %d, out %s, err %s", code, out, errs)
	}
	for _, cmd := range [][]string{{"validate", "-live"}, {"run"}} {
		code, out, errs = runCLI(append(cmd, "-c", file)...)
		if code != 1 || !strings.Contains(errs, "config.database.password: ${env:TILEFEED_TEST_UNSET_PW}: environment variable is not set") {
			t.Errorf("%v: exit %d, out %s, err %s", cmd, code, out, errs)
		}
	}
}

// emptyStore creates an embedded store with nothing in it.
func emptyStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	return path
}

package transform

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/sink"
)

// rewrite is -update (named so as not to clash with the update helper).
var rewrite = flag.Bool("update", false, "rewrite the expected output of testdata/*.txt")

// TestGolden runs the scripts in testdata: change events in, records and
// features out. Regenerate the expected output with
//
//	go test ./transform -run TestGolden -update
//
// and review the diff.
//
// A script is a sequence of blocks:
//
//	command args…
//	input lines…
//	----
//	expected output (no blank lines)
//
// separated by blank lines; lines starting with '#' between blocks are
// comments. Times are written "@offset" from 2026-11-22T12:00:00Z ("@-5m",
// "@-3d", "@90s") or "t:RFC3339"; values are "null", "unchanged", a time
// or tagged: i:42, d:12.50, f:0.1, s:text, b:true.
//
// Commands:
//
//	features            input: the JSON array of feature groups
//	insert pos=L[.O] commit=@T         input: the row
//	update pos=L[.O] commit=@T         input: "before: row" (optional), "after: row"
//	delete pos=L[.O] commit=@T         input: the row
//	truncate pos=L[.O] commit=@T
//	begin / end         open and close a batch (otherwise each event is one)
//	read GROUP ID at=@T                the features
//	state GROUP ID                     the record, tile by tile
//	stats                              Stats.Unmatched so far
//	records                            the keys of non-empty records
func TestGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScript(t, file)
		})
	}
}

type block struct {
	pre      []string // comment and blank lines before the block
	cmd      string
	line     int // of cmd
	input    []string
	expected []string
}

func parseScript(t *testing.T, data string) (blocks []*block, trailer []string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	var pre []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			i++
			continue
		}
		b := &block{pre: pre, cmd: l, line: i + 1}
		pre = nil
		i++
		for i < len(lines) && lines[i] != "----" {
			if strings.TrimSpace(lines[i]) == "" {
				t.Fatalf("line %d: blank line before ---- in the block of line %d", i+1, b.line)
			}
			b.input = append(b.input, lines[i])
			i++
		}
		if i == len(lines) {
			t.Fatalf("line %d: block has no ----", b.line)
		}
		i++
		for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
			b.expected = append(b.expected, lines[i])
			i++
		}
		blocks = append(blocks, b)
	}
	return blocks, pre
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks, trailer := parseScript(t, string(data))
	var h *harness
	var out strings.Builder
	for _, b := range blocks {
		got := runBlock(t, &h, b)
		if len(got) == 0 {
			got = []string{"ok"}
		}
		for _, l := range b.pre {
			out.WriteString(l + "\n")
		}
		out.WriteString(b.cmd + "\n")
		for _, l := range b.input {
			out.WriteString(l + "\n")
		}
		out.WriteString("----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
		if !*rewrite && strings.Join(got, "\n") != strings.Join(b.expected, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, b.line, b.cmd,
				strings.Join(got, "\n"), strings.Join(b.expected, "\n"))
		}
	}
	for _, l := range trailer {
		out.WriteString(l + "\n")
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runBlock(t *testing.T, hp **harness, b *block) []string {
	t.Helper()
	fields := strings.Fields(b.cmd)
	verb, args := fields[0], fields[1:]
	fail := func(format string, a ...any) []string {
		t.Fatalf("line %d: %s", b.line, fmt.Sprintf(format, a...))
		return nil
	}
	named := map[string]string{}
	var positional []string
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			named[k] = v
		} else {
			positional = append(positional, a)
		}
	}
	if verb == "features" {
		var fs []config.Feature
		if err := json.Unmarshal([]byte(strings.Join(b.input, "\n")), &fs); err != nil {
			return fail("features: %v", err)
		}
		eng, err := compileFeatures(fs)
		if err != nil {
			return []string{"error: " + strings.ReplaceAll(err.Error(), "\n", " | ")}
		}
		*hp = &harness{tb: t, eng: eng, states: map[sink.Key]*State{}}
		var out []string
		for _, g := range eng.Groups() {
			for _, a := range g.Aggs {
				out = append(out, fmt.Sprintf("%s.%s: %s(%s) window %v tile %v", g.Name, a.Name, a.Function, a.Column, a.Window, a.Tile))
			}
			if len(g.Project) > 0 {
				out = append(out, fmt.Sprintf("%s: project %s", g.Name, strings.Join(g.Project, ", ")))
			}
			out = append(out, fmt.Sprintf("%s: ttl %v", g.Name, g.TTL))
		}
		return out
	}
	h := *hp
	if h == nil {
		return fail("%s before features", verb)
	}
	switch verb {
	case "insert", "update", "delete", "truncate":
		ev := change.Event{Table: table}
		switch verb {
		case "insert":
			ev.Op = change.Insert
		case "update":
			ev.Op = change.Update
		case "delete":
			ev.Op = change.Delete
		case "truncate":
			ev.Op = change.Truncate
		}
		if tb, ok := named["table"]; ok {
			ev.Table = tb
		}
		p, err := parsePos(named["pos"])
		if err != nil {
			return fail("%v", err)
		}
		ev.Pos = p
		ev.CommitTime = t0
		if c, ok := named["commit"]; ok {
			if ev.CommitTime, err = parseTime(c); err != nil {
				return fail("%v", err)
			}
		}
		for _, l := range b.input {
			label, rest, ok := strings.Cut(l, ": ")
			if !ok {
				label, rest = "", l
			}
			row, err := parseRow(rest)
			if err != nil {
				return fail("%v", err)
			}
			switch {
			case label == "before" || (label == "" && verb == "delete"):
				ev.Before = row
			case label == "after" || (label == "" && verb == "insert"):
				ev.After = row
			default:
				return fail("row label %q for %s", label, verb)
			}
		}
		before := h.stats
		outs, err := h.apply(ev)
		var out []string
		for _, o := range outs {
			out = append(out, o.String())
		}
		if err != nil {
			var de *DataError
			kind := "error"
			if errors.As(err, &de) {
				kind = "data error"
			}
			out = append(out, kind+": "+err.Error())
		} else if len(outs) == 0 {
			out = append(out, "no updates")
		}
		if d := h.stats.Unmatched - before.Unmatched; d != 0 {
			out = append(out, fmt.Sprintf("unmatched +%d", d))
		}
		return out
	case "begin":
		h.begin()
		return nil
	case "end":
		h.end()
		return nil
	case "read":
		if len(positional) != 2 {
			return fail("read GROUP ID at=@T")
		}
		now, err := parseTime(named["at"])
		if err != nil {
			return fail("%v", err)
		}
		g := h.eng.Group(positional[0])
		if g == nil {
			return fail("no group %s", positional[0])
		}
		feats := g.Read(stateOrEmpty(h.state(positional[0], positional[1])), now)
		out := make([]string, len(feats))
		for i, f := range feats {
			out[i] = f.Name + " = " + show(f.Value)
		}
		return out
	case "state":
		if len(positional) != 2 {
			return fail("state GROUP ID")
		}
		return describeState(h.state(positional[0], positional[1]))
	case "stats":
		return []string{fmt.Sprintf("unmatched %d", h.stats.Unmatched)}
	case "records":
		var out []string
		for k, st := range h.states {
			if !st.IsEmpty() {
				out = append(out, k.String())
			}
		}
		sort.Strings(out)
		return out
	}
	return fail("unknown command %q", verb)
}

func stateOrEmpty(st *State) *State {
	if st == nil {
		return &State{}
	}
	return st
}

func parsePos(s string) (change.Position, error) {
	lsn, ord, ok := strings.Cut(s, ".")
	if !ok {
		ord = "1"
	}
	l, err := strconv.ParseUint(lsn, 10, 64)
	if err != nil {
		return change.Position{}, fmt.Errorf("pos %q: %v", s, err)
	}
	o, err := strconv.ParseUint(ord, 10, 32)
	if err != nil {
		return change.Position{}, fmt.Errorf("pos %q: %v", s, err)
	}
	return change.Position{LSN: l, Ordinal: uint32(o)}, nil
}

// parseRow reads "col=value col=value".
func parseRow(s string) (change.Row, error) {
	row := change.Row{}
	for _, f := range strings.Fields(s) {
		col, lit, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not col=value", f)
		}
		v, err := parseValue(lit)
		if err != nil {
			return nil, fmt.Errorf("column %s: %v", col, err)
		}
		row[col] = v
	}
	return row, nil
}

func parseValue(lit string) (any, error) {
	switch {
	case lit == "null":
		return nil, nil
	case lit == "unchanged":
		return change.Unchanged, nil
	case strings.HasPrefix(lit, "@"):
		return parseTime(lit)
	}
	return decodeValue(lit)
}

// parseTime reads "@offset" (from t0) or "t:RFC3339".
func parseTime(s string) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "t:"); ok {
		return time.Parse(time.RFC3339Nano, rest)
	}
	rest, ok := strings.CutPrefix(s, "@")
	if !ok {
		return time.Time{}, fmt.Errorf("time %q: want @offset or t:RFC3339", s)
	}
	d, err := parseOffset(rest)
	if err != nil {
		return time.Time{}, err
	}
	return t0.Add(d), nil
}

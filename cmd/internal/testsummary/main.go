// Command testsummary reads `go test -json` on standard input and prints
// what plain `go test` prints (each package's ok/FAIL line, the output of
// failed tests), then every skipped test with its reason, and a closing
// line "N passed, N failed, N skipped". It exits 1 when a test or a
// package failed. make test pipes the test run through it, so a test that
// skips because a server is missing (AEROSPIKE_HOSTS) says so at the end.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct{ pkg, test, reason string }

// summarize copies the run from r to w as described in the package
// comment and reports whether anything failed.
func summarize(r io.Reader, w io.Writer) (bool, error) {
	out := map[string][]string{} // package/test → its output so far
	var skips []skip
	var passed, failedTests, skipped int
	failed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Action == "" {
			fmt.Fprintf(w, "%s\n", line) // not an event (go vet, a build message): pass it on
			continue
		}
		id := ev.Package + " " + ev.Test
		switch {
		case ev.Action == "build-output":
			fmt.Fprint(w, ev.Output)
		case ev.Action == "build-fail":
			failed = true
		case ev.Test == "" && ev.Action == "output":
			if ev.Output != "PASS\n" && ev.Output != "FAIL\n" && !strings.HasPrefix(ev.Output, "=== ") {
				fmt.Fprint(w, ev.Output)
			}
		case ev.Test == "" && ev.Action == "fail":
			failed = true
		case ev.Test == "":
			// a package's start, pass or skip: its ok line is output
		case ev.Action == "output":
			out[id] = append(out[id], ev.Output)
		case ev.Action == "pass":
			passed++
			delete(out, id)
		case ev.Action == "fail":
			failed = true
			failedTests++
			fmt.Fprint(w, strings.Join(out[id], ""))
			delete(out, id)
		case ev.Action == "skip":
			skipped++
			skips = append(skips, skip{ev.Package, ev.Test, skipReason(out[id])})
			delete(out, id)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	if len(skips) > 0 {
		sort.Slice(skips, func(i, j int) bool {
			if skips[i].pkg != skips[j].pkg {
				return skips[i].pkg < skips[j].pkg
			}
			return skips[i].test < skips[j].test
		})
		fmt.Fprintf(w, "\nskipped tests (%d):\n", len(skips))
		for _, s := range skips {
			fmt.Fprintf(w, "  %s %s: %s\n", s.pkg, s.test, s.reason)
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", passed, failedTests, skipped)
	return failed, nil
}

// skipReason is what the test said before it skipped: its log lines,
// without the === and --- lines and the file:line prefixes.
func skipReason(lines []string) string {
	var said []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		if file, rest, ok := strings.Cut(l, ": "); ok && strings.Contains(file, ".go:") && !strings.Contains(file, " ") {
			l = rest
		}
		said = append(said, l)
	}
	if len(said) == 0 {
		return "(no reason given)"
	}
	return strings.Join(said, " / ")
}

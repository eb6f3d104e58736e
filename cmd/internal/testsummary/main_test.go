package main

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		`{"Action":"start","Package":"a"}`,
		`{"Action":"run","Package":"a","Test":"TestOK"}`,
		`{"Action":"output","Package":"a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"output","Package":"a","Test":"TestOK","Output":"    a_test.go:3: chatter of a passing test\n"}`,
		`{"Action":"pass","Package":"a","Test":"TestOK"}`,
		`{"Action":"run","Package":"a","Test":"TestStore"}`,
		`{"Action":"output","Package":"a","Test":"TestStore","Output":"=== RUN   TestStore\n"}`,
		`{"Action":"output","Package":"a","Test":"TestStore","Output":"    store_test.go:12: AEROSPIKE_HOSTS is unset: no Aerospike to test against\n"}`,
		`{"Action":"output","Package":"a","Test":"TestStore","Output":"--- SKIP: TestStore (0.00s)\n"}`,
		`{"Action":"skip","Package":"a","Test":"TestStore"}`,
		`{"Action":"output","Package":"a","Output":"PASS\n"}`,
		`{"Action":"output","Package":"a","Output":"ok  \ta\t0.01s\n"}`,
		`{"Action":"pass","Package":"a"}`,
		`{"Action":"run","Package":"b","Test":"TestBad"}`,
		`{"Action":"output","Package":"b","Test":"TestBad","Output":"=== RUN   TestBad\n"}`,
		`{"Action":"output","Package":"b","Test":"TestBad","Output":"    b_test.go:9: got 1, want 2\n"}`,
		`{"Action":"output","Package":"b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"b","Test":"TestBad"}`,
		`{"Action":"output","Package":"b","Output":"FAIL\n"}`,
		`{"Action":"output","Package":"b","Output":"FAIL\tb\t0.02s\n"}`,
		`{"Action":"fail","Package":"b"}`,
		`# c`,
	}, "\n")
	var out strings.Builder
	failed, err := summarize(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("a failed test and package reported as success")
	}
	got := out.String()
	for _, want := range []string{
		"ok  \ta\t0.01s\n",
		"b_test.go:9: got 1, want 2\n--- FAIL: TestBad",
		"FAIL\tb\t0.02s\n",
		"# c\n",
		"skipped tests (1):\n  a TestStore: AEROSPIKE_HOSTS is unset: no Aerospike to test against\n",
		"\n1 passed, 1 failed, 1 skipped\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "chatter of a passing test") {
		t.Errorf("a passing test's output was printed:\n%s", got)
	}

	failed, err = summarize(strings.NewReader(`{"Action":"pass","Package":"a","Test":"T"}`+"\n"+`{"Action":"pass","Package":"a"}`), &out)
	if err != nil || failed {
		t.Errorf("a passing run: failed %v, %v", failed, err)
	}
}

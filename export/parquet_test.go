package export

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/parquet-go/parquet-go"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
)

var parquetGroup = config.Feature{Name: "g", Table: "t", Entity: []string{"card_id"}, Time: "at",
	Aggregations: []config.Aggregation{
		{Name: "n", Function: "count"},
		{Name: "total", Function: "sum", Column: "amount"},
		{Name: "avg_30m", Function: "avg", Column: "amount", Window: "30m"},
		{Name: "last_merchant", Function: "last", Column: "merchant"},
		{Name: "last_at", Function: "max", Column: "at"},
		{Name: "days", Function: "days_since_last", Column: "at"},
	}}

func parquetRows() memTable {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []change.Row
	for i := range 120 {
		rows = append(rows, change.Row{"card_id": int64(i % 5), "at": t0.Add(time.Duration(i) * time.Minute),
			"amount": decimal(fmt.Sprintf("%d.%02d", i, i%100)), "merchant": fmt.Sprintf("m,%d", i%3)})
	}
	return memTable{"t": rows}
}

// writeParquetSpine writes a spine of every column kind a spine may
// have: a required key, an optional timestamp, NULLs, a decimal.
func writeParquetSpine(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spine.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	group := orderedGroup{
		{name: "label", Node: parquet.Optional(parquet.Leaf(parquet.BooleanType))},
		{name: "card_id", Node: parquet.Int(64)},
		{name: "ts", Node: parquet.Optional(parquet.Timestamp(parquet.Microsecond))},
		{name: "note", Node: parquet.Optional(parquet.String())},
		{name: "weight", Node: parquet.Optional(parquet.Decimal(2, 10, parquet.Int64Type))},
	}
	w := parquet.NewWriter(f, parquet.NewSchema("spine", group), parquet.MaxRowsPerRowGroup(50))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		at := t0.Add(time.Duration((i*37)%140) * time.Minute)
		row := parquet.Row{
			parquet.BooleanValue(i%2 == 0).Level(0, 1, 0),
			parquet.Int64Value(int64((i*3)%7)).Level(0, 0, 1),
			parquet.Int64Value(at.UnixMicro()).Level(0, 1, 2),
			parquet.ByteArrayValue([]byte(fmt.Sprintf("n \"%d\", x", i))).Level(0, 1, 3),
			parquet.Int64Value(int64(i*10+5)).Level(0, 1, 4),
		}
		if i%4 == 0 {
			row[0] = parquet.NullValue().Level(0, 0, 0)
			row[3] = parquet.NullValue().Level(0, 0, 3)
		}
		if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readParquetText reads a Parquet file with the spine reader and returns
// its header and rows as text, as the CSV table writes them.
func readParquetText(t *testing.T, path string) ([]string, [][]string, *parquet.Schema) {
	t.Helper()
	sp, err := openParquetSpine(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sp.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rows [][]string
	for {
		vals, err := r.Next()
		if err != nil {
			break
		}
		var rec []string
		for _, v := range vals {
			s, err := text(v)
			if err != nil {
				t.Fatal(err)
			}
			rec = append(rec, s)
		}
		rows = append(rows, rec)
	}
	f, pf, err := openParquet(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return sp.Columns(), rows, pf.Schema()
}

func readCSVText(t *testing.T, path string) ([]string, [][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs[0], recs[1:]
}

// TestParquet: a Parquet spine exports to Parquet and to CSV with the same
// values; the Parquet training set keeps the spine's column types and
// NULLs, and types each feature (count INT64, sums DECIMAL(38, scale),
// times TIMESTAMP, days DOUBLE, text STRING); a CSV spine exports to
// Parquet too, its columns as text.
func TestParquet(t *testing.T) {
	engine := compile(t, parquetGroup)
	src := parquetRows()
	spine := writeParquetSpine(t, 200)
	dir := t.TempDir()
	run := func(spine, out string) {
		t.Helper()
		if err := Run(context.Background(), engine, src, Options{Spine: spine, Out: filepath.Join(dir, out), SpillBytes: 512}); err != nil {
			t.Fatal(err)
		}
	}
	run(spine, "train.parquet")
	run(spine, "train.csv")
	pHeader, pRows, schema := readParquetText(t, filepath.Join(dir, "train.parquet"))
	cHeader, cRows := readCSVText(t, filepath.Join(dir, "train.csv"))
	if fmt.Sprint(pHeader) != fmt.Sprint(cHeader) || len(pRows) != 200 || len(cRows) != 200 {
		t.Fatalf("parquet %v (%d rows), csv %v (%d rows)", pHeader, len(pRows), cHeader, len(cRows))
	}
	for i := range cRows {
		if !sameRow(pRows[i], cRows[i]) {
			t.Errorf("row %d: parquet %q, csv %q", i+1, pRows[i], cRows[i])
		}
	}
	if cRows[0][0] != "" || cRows[0][3] != "" || cRows[1][0] != "false" || cRows[1][4] != "0.15" {
		t.Errorf("spine columns: %q, %q", cRows[0], cRows[1])
	}
	want := map[string]string{
		"label":            "optional boolean label",
		"card_id":          "required int64 card_id (INT(64,true))",
		"ts":               "optional int64 ts (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"note":             "optional binary note (STRING)",
		"weight":           "optional int64 weight (DECIMAL(10,2))",
		"g__n":             "optional int64 g__n (INT(64,true))",
		"g__total":         "optional fixed_len_byte_array(16) g__total (DECIMAL(38,2))",
		"g__last_merchant": "optional binary g__last_merchant (STRING)",
		"g__last_at":       "optional int64 g__last_at (TIMESTAMP(isAdjustedToUTC=true,unit=MICROS))",
		"g__days":          "optional double g__days",
	}
	text := schema.String()
	for name, w := range want {
		if !strings.Contains(text, w+";") {
			t.Errorf("column %s: want %q in\n%s", name, w, text)
		}
	}
	if !strings.Contains(text, "g__avg_30m (DECIMAL(38,") {
		t.Errorf("avg is not a decimal:\n%s", text)
	}
	// A CSV spine: its columns are text, the features the same.
	var b strings.Builder
	b.WriteString(strings.Join(cHeader[:5], ",") + "\n")
	cw := csv.NewWriter(&b)
	for _, r := range cRows {
		cw.Write(r[:5])
	}
	cw.Flush()
	csvSpine := writeSpine(t, b.String())
	run(csvSpine, "from_csv.parquet")
	_, fromCSV, schema := readParquetText(t, filepath.Join(dir, "from_csv.parquet"))
	for i := range cRows {
		if !sameRow(fromCSV[i], cRows[i]) {
			t.Errorf("row %d from a CSV spine: %q, want %q", i+1, fromCSV[i], cRows[i])
		}
	}
	if !strings.Contains(schema.String(), "optional binary card_id (STRING);") {
		t.Errorf("a CSV spine's columns are not text:\n%s", schema)
	}
}

// sameRow: the same text, but for decimals, which are equal when their
// numbers are: a Parquet DECIMAL column has one scale for every value
// (avg's 20.2 is 20.200000000000000000 there).
func sameRow(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] == b[i] {
			continue
		}
		x, _, err1 := apd.NewFromString(a[i])
		y, _, err2 := apd.NewFromString(b[i])
		if err1 != nil || err2 != nil || x.Cmp(y) != 0 {
			return false
		}
	}
	return true
}

// TestParquetSpineErrors: a spine that cannot be read is an error naming
// the file or the column, before anything is written.
func TestParquetSpineErrors(t *testing.T) {
	engine := compile(t, parquetGroup)
	dir := t.TempDir()
	notParquet := filepath.Join(dir, "labels.parquet")
	os.WriteFile(notParquet, []byte("card_id,ts\n1,2026-01-01\n"), 0o644)
	nested := filepath.Join(dir, "nested.parquet")
	f, _ := os.Create(nested)
	w := parquet.NewWriter(f, parquet.NewSchema("s", orderedGroup{
		{name: "card_id", Node: parquet.Int(64)},
		{name: "ts", Node: parquet.Timestamp(parquet.Microsecond)},
		{name: "tags", Node: parquet.List(parquet.String())}}))
	w.Close()
	f.Close()
	for _, tc := range []struct{ spine, want string }{
		{notParquet, "labels.parquet is not a Parquet file"},
		{nested, "spine column tags is a LIST: a spine's columns are flat values"},
	} {
		out := filepath.Join(dir, "out.parquet")
		err := Run(context.Background(), engine, parquetRows(), Options{Spine: tc.spine, Out: out})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.spine, err, tc.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: output written", tc.spine)
		}
	}
}

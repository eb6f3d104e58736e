package export

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// spineFile is a file of labelled examples that can be read more than
// once: a first pass checks it and sorts its keys, the last one copies its
// columns into the training set, so no pass holds it in memory.
type spineFile interface {
	Columns() []string
	Open() (spineReader, error)
}

// spineReader reads a spine's rows in file order.
type spineReader interface {
	// Next returns the next row's values (string for CSV; typed for
	// Parquet), or io.EOF. The slice is reused by the next call.
	Next() ([]any, error)
	// Where names the row Next returned, for errors: "line 12", "row 12".
	Where() string
	Close() error
}

// openSpine opens a spine by its file name's extension.
func openSpine(path string) (spineFile, error) {
	if isParquet(path) {
		return openParquetSpine(path)
	}
	return openCSVSpine(path)
}

// csvSpine is a spine in CSV with a header row.
type csvSpine struct {
	path    string
	columns []string
}

func openCSVSpine(path string) (*csvSpine, error) {
	r, err := (&csvSpine{path: path}).open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return &csvSpine{path: path, columns: r.header}, nil
}

func (s *csvSpine) Columns() []string { return s.columns }

func (s *csvSpine) Open() (spineReader, error) { return s.open() }

func (s *csvSpine) open() (*csvReader, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	r := &csvReader{f: f, cr: csv.NewReader(f)}
	r.cr.ReuseRecord = true
	header, err := r.cr.Read()
	if err != nil {
		f.Close()
		if errors.Is(err, io.EOF) {
			err = errors.New("the file is empty: a spine starts with a header row")
		}
		return nil, fmt.Errorf("spine header: %w", err)
	}
	r.header = append([]string{}, header...)
	r.vals = make([]any, len(header))
	return r, nil
}

type csvReader struct {
	f      *os.File
	cr     *csv.Reader
	header []string
	vals   []any
	line   int
}

func (r *csvReader) Next() ([]any, error) {
	rec, err := r.cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("spine: %w", err)
	}
	r.line, _ = r.cr.FieldPos(0)
	for i, v := range rec {
		r.vals[i] = v
	}
	return r.vals, nil
}

func (r *csvReader) Where() string { return fmt.Sprintf("line %d", r.line) }

func (r *csvReader) Close() error { return r.f.Close() }

// timeLayouts are the spine timestamps accepted besides RFC 3339: what
// PostgreSQL, pandas and Spark write.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02"}

// ParseTime parses a spine timestamp; one without a zone is UTC.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp (RFC 3339, or 2006-01-02 15:04:05[.frac][zone], or a date)", s)
}

// spineTime is a spine value as a timestamp.
func spineTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		return ParseTime(x)
	case nil:
		return time.Time{}, errors.New("is NULL: every example needs a timestamp")
	}
	return time.Time{}, fmt.Errorf("holds %T %v, not a timestamp", v, v)
}

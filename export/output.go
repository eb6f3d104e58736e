package export

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// table is where a training set's rows go, in spine order.
type table interface {
	// Write writes one row: the spine's values, then each group's
	// features.
	Write(spine []any, feats [][]any) error
	// Close flushes what is buffered; the file itself is the caller's.
	Close() error
}

// column is one output column: a spine's, or a group's feature.
type column struct {
	Name  string
	types *valueTypes // a feature's values seen; nil for a spine column
}

// newTable returns the writer for path's format.
func newTable(path string, w io.Writer, cols []column) (table, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet":
		return nil, fmt.Errorf("%s: Parquet is not supported yet; spines and training sets are CSV", path)
	}
	return newCSVTable(w, cols)
}

// csvTable writes CSV with a header row; NULL is an empty field.
type csvTable struct {
	bw     *bufio.Writer
	cw     *csv.Writer
	fields []string
}

func newCSVTable(w io.Writer, cols []column) (*csvTable, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	t := &csvTable{bw: bw, cw: csv.NewWriter(bw)}
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.Name
	}
	if err := t.cw.Write(header); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *csvTable) Write(spine []any, feats [][]any) error {
	t.fields = t.fields[:0]
	for _, v := range spine {
		s, err := text(v)
		if err != nil {
			return err
		}
		t.fields = append(t.fields, s)
	}
	for _, vals := range feats {
		for _, v := range vals {
			s, err := text(v)
			if err != nil {
				return err
			}
			t.fields = append(t.fields, s)
		}
	}
	return t.cw.Write(t.fields)
}

func (t *csvTable) Close() error {
	t.cw.Flush()
	if err := t.cw.Error(); err != nil {
		return err
	}
	return t.bw.Flush()
}

// valueTypes sums up the values one feature column took, so a typed
// format can choose the column's type once every value is known.
type valueTypes struct {
	kinds uint16 // a bit per kind seen, 1<<tag order in kindOf
}

// Kinds of values, as bits of valueTypes.kinds.
const (
	kindInt = 1 << iota
	kindFloat
	kindDecimal
	kindString
	kindTime
	kindInfinity
	kindBool
	kindBytes
	kindJSON
	kindDuration
	kindArray
)

func (vt *valueTypes) observe(v any) {
	switch v.(type) {
	case nil:
	case int64:
		vt.kinds |= kindInt
	case float64:
		vt.kinds |= kindFloat
	case *apd.Decimal:
		vt.kinds |= kindDecimal
	case string:
		vt.kinds |= kindString
	case time.Time:
		vt.kinds |= kindTime
	case change.Infinity:
		vt.kinds |= kindInfinity
	case bool:
		vt.kinds |= kindBool
	case []byte:
		vt.kinds |= kindBytes
	case json.RawMessage:
		vt.kinds |= kindJSON
	case time.Duration:
		vt.kinds |= kindDuration
	case []any:
		vt.kinds |= kindArray
	}
}

package export

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/parquet-go/parquet-go"

	"github.com/tilefeed/tilefeed/change"
)

// table is where a training set's rows go, in spine order.
type table interface {
	// Write writes one row: the spine's values, then each group's
	// features.
	Write(spine spineRow, feats [][]any) error
	// Close flushes what is buffered; the file itself is the caller's.
	Close() error
}

// spineRow is a spine row as the last pass hands it on: its values, and
// for a Parquet spine the same row as Parquet values.
type spineRow struct {
	vals []any
	raw  parquet.Row
}

// column is one output column: a spine's, or a group's feature.
type column struct {
	Name     string
	types    *valueTypes // a feature's values seen; nil for a spine column
	function string      // a feature's aggregate function; "" when projected
}

// newTable returns the writer for path's format (.parquet, or CSV).
func newTable(path string, w io.Writer, cols []column, sp spineFile, progress io.Writer) (table, error) {
	if isParquet(path) {
		return newParquetTable(w, cols, sp, progress)
	}
	return newCSVTable(w, cols)
}

func isParquet(path string) bool { return strings.EqualFold(filepath.Ext(path), ".parquet") }

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

func (t *csvTable) Write(spine spineRow, feats [][]any) error {
	t.fields = t.fields[:0]
	for _, v := range spine.vals {
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
	kinds        uint16 // a bit per kind seen
	nonFinite    bool   // a NaN or ±Infinity decimal
	maxScale     int    // of finite decimals: digits after the point
	maxIntDigits int    // and before it
	nanos        bool   // a time with a fraction finer than microseconds
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
	switch x := v.(type) {
	case nil:
	case int64:
		vt.kinds |= kindInt
	case float64:
		vt.kinds |= kindFloat
	case *apd.Decimal:
		vt.kinds |= kindDecimal
		vt.observeDecimal(x)
	case string:
		vt.kinds |= kindString
	case time.Time:
		vt.kinds |= kindTime
		if x.Nanosecond()%1000 != 0 {
			vt.nanos = true
		}
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

func (vt *valueTypes) observeDecimal(d *apd.Decimal) {
	if d.Form != apd.Finite {
		vt.nonFinite = true
		return
	}
	digits := int(d.NumDigits())
	scale := max(-int(d.Exponent), 0)
	vt.maxScale = max(vt.maxScale, scale)
	vt.maxIntDigits = max(vt.maxIntDigits, digits-scale+max(int(d.Exponent), 0))
}

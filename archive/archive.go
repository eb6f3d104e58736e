// Package archive keeps the changes tilefeed applied, in the order it
// applied them, as rotated NDJSON files (gzip by default), so that a
// training set can replay exactly what was served (tilefeed export
// -source replay).
//
// The runtime appends each batch's new changes and syncs the file before
// the batch's records and checkpoint are written, so the archive holds
// every durable change. A crash can leave it with changes that never
// became durable, and a cut last line; the source sends those changes
// again after the restart, and a reader keeps the first copy of each
// position (per stream, positions only grow) and skips a cut tail. What
// a reader gets is therefore exactly the sequence of changes the store
// holds, in the order they were applied.
package archive

import (
	"bufio"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tilefeed/tilefeed/change"
)

// record is one archived change, a line of NDJSON.
type record struct {
	Op     string         `json:"op"`
	Table  string         `json:"table"`
	Stream string         `json:"stream,omitempty"`
	LSN    uint64         `json:"lsn"`
	Seq    uint64         `json:"seq,omitempty"`
	Ord    uint32         `json:"ord,omitempty"`
	Commit string         `json:"commit"`
	Sparse bool           `json:"sparse,omitempty"`
	Before map[string]any `json:"before,omitempty"`
	After  map[string]any `json:"after,omitempty"`
}

// Encode renders a change as one line of NDJSON (with its newline).
// Values are tagged strings that keep their Go type ("i:42", "d:12.50",
// "t:<unix seconds>.<nanoseconds>", docs/point-in-time.md).
func Encode(ev *change.Event) ([]byte, error) {
	r := record{Op: string(rune(ev.Op)), Table: ev.Table, Stream: ev.Stream, LSN: ev.Pos.LSN, Seq: ev.Pos.Seq, Ord: ev.Pos.Ordinal,
		Commit: ev.CommitTime.UTC().Format(time.RFC3339Nano), Sparse: ev.Sparse}
	var err error
	if r.Before, err = encodeRow(ev.Before); err != nil {
		return nil, fmt.Errorf("archive %s of %s at %s, old row: %w", ev.Op, ev.Table, ev.Pos, err)
	}
	if r.After, err = encodeRow(ev.After); err != nil {
		return nil, fmt.Errorf("archive %s of %s at %s, new row: %w", ev.Op, ev.Table, ev.Pos, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Decode reads a line Encode wrote.
func Decode(line []byte) (change.Event, error) {
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return change.Event{}, fmt.Errorf("not an archived change: %w", err)
	}
	if len(r.Op) != 1 || !strings.Contains("cudr", r.Op) || r.Table == "" {
		return change.Event{}, fmt.Errorf("not an archived change: op %q, table %q", r.Op, r.Table)
	}
	commit, err := time.Parse(time.RFC3339Nano, r.Commit)
	if err != nil {
		return change.Event{}, fmt.Errorf("archived change: commit time: %w", err)
	}
	ev := change.Event{Op: change.Op(r.Op[0]), Table: r.Table, Stream: r.Stream, Pos: change.Position{LSN: r.LSN, Seq: r.Seq, Ordinal: r.Ord},
		CommitTime: commit, Sparse: r.Sparse}
	if ev.Before, err = decodeRow(r.Before); err != nil {
		return change.Event{}, fmt.Errorf("archived change at %s, old row: %w", ev.Pos, err)
	}
	if ev.After, err = decodeRow(r.After); err != nil {
		return change.Event{}, fmt.Errorf("archived change at %s, new row: %w", ev.Pos, err)
	}
	return ev, nil
}

func encodeRow(row change.Row) (map[string]any, error) {
	if row == nil {
		return nil, nil
	}
	out := make(map[string]any, len(row))
	for col, v := range row {
		e, err := encodeValue(v)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", col, err)
		}
		out[col] = e
	}
	return out, nil
}

func decodeRow(m map[string]any) (change.Row, error) {
	if m == nil {
		return nil, nil
	}
	row := make(change.Row, len(m))
	for col, e := range m {
		v, err := decodeValue(e)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", col, err)
		}
		row[col] = v
	}
	return row, nil
}

// encodeValue tags a row value: null, true/false, a JSON array for an
// array, a tagged string for the rest.
func encodeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case int64:
		return "i:" + strconv.FormatInt(x, 10), nil
	case float64:
		return "f:" + strconv.FormatFloat(x, 'g', -1, 64), nil
	case *apd.Decimal:
		return "d:" + x.String(), nil
	case string:
		return "s:" + x, nil
	case []byte:
		return "x:" + hex.EncodeToString(x), nil
	case time.Time:
		return fmt.Sprintf("t:%d.%09d", x.Unix(), x.Nanosecond()), nil
	case time.Duration:
		return "v:" + strconv.FormatInt(int64(x), 10), nil
	case json.RawMessage:
		return "j:" + string(x), nil
	case change.Infinity:
		return "I:" + x.String(), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = encodeValue(e); err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
		}
		return out, nil
	}
	if v == change.Unchanged {
		return "U:", nil
	}
	return nil, fmt.Errorf("values of type %T cannot be archived", v)
}

func decodeValue(e any) (any, error) {
	switch x := e.(type) {
	case nil, bool:
		return x, nil
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			var err error
			if out[i], err = decodeValue(el); err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
		}
		return out, nil
	case string:
		if len(x) < 2 || x[1] != ':' {
			break
		}
		body := x[2:]
		switch x[0] {
		case 'i':
			return strconv.ParseInt(body, 10, 64)
		case 'f':
			return strconv.ParseFloat(body, 64)
		case 'd':
			d, _, err := apd.NewFromString(body)
			return d, err
		case 's':
			return body, nil
		case 'x':
			return hex.DecodeString(body)
		case 't':
			secText, nsText, ok := strings.Cut(body, ".")
			sec, err1 := strconv.ParseInt(secText, 10, 64)
			ns, err2 := strconv.ParseInt(nsText, 10, 64)
			if !ok || err1 != nil || err2 != nil || len(nsText) != 9 || ns < 0 {
				return nil, fmt.Errorf("%q is not an archived time", x)
			}
			return time.Unix(sec, ns).UTC(), nil
		case 'v':
			n, err := strconv.ParseInt(body, 10, 64)
			return time.Duration(n), err
		case 'j':
			if !json.Valid([]byte(body)) {
				return nil, fmt.Errorf("%q is not JSON", body)
			}
			return json.RawMessage(body), nil
		case 'I':
			if inf, ok := change.ParseInfinity(body); ok {
				return inf, nil
			}
		case 'U':
			if body == "" {
				return change.Unchanged, nil
			}
		}
	}
	return nil, fmt.Errorf("%v is not an archived value", e)
}

// Writer appends changes to the archive's current file, starting a new
// one past a size.
type Writer struct {
	dir      string
	rotate   int64
	compress bool
	seq      int // of the current file
	f        *os.File
	gz       *gzip.Writer
	bw       *bufio.Writer
	size     int64 // bytes of NDJSON written to the current file
	buf      []byte
}

// fileName is the archive file of sequence number seq.
func fileName(seq int, compress bool) string {
	name := fmt.Sprintf("changes-%08d.ndjson", seq)
	if compress {
		name += ".gz"
	}
	return name
}

// OpenWriter opens an archive in dir (made if missing): a new file after
// the ones there, so that a file a crash cut is never written to again.
func OpenWriter(dir string, rotateBytes int64, compress bool) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("archive.dir: %w", err)
	}
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, rotate: rotateBytes, compress: compress}
	if len(files) > 0 {
		w.seq, _ = seqOf(files[len(files)-1])
	}
	return w, nil
}

func (w *Writer) open() error {
	w.seq++
	f, err := os.OpenFile(filepath.Join(w.dir, fileName(w.seq, w.compress)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	w.f, w.size = f, 0
	var out io.Writer = f
	if w.compress {
		w.gz = gzip.NewWriter(f)
		out = w.gz
	}
	w.bw = bufio.NewWriterSize(out, 256<<10)
	return syncDir(w.dir)
}

// Append writes the changes and makes them durable (fsync) before it
// returns.
func (w *Writer) Append(evs []*change.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if w.f == nil {
		if err := w.open(); err != nil {
			return err
		}
	}
	for _, ev := range evs {
		line, err := Encode(ev)
		if err != nil {
			return err
		}
		if _, err := w.bw.Write(line); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		w.size += int64(len(line))
	}
	if err := w.sync(); err != nil {
		return err
	}
	if w.rotate > 0 && w.size >= w.rotate {
		return w.closeFile()
	}
	return nil
}

func (w *Writer) sync() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if w.gz != nil {
		if err := w.gz.Flush(); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// closeFile ends the current file: the next Append starts another.
func (w *Writer) closeFile() error {
	if w.f == nil {
		return nil
	}
	err := w.bw.Flush()
	if w.gz != nil {
		err = errors.Join(err, w.gz.Close())
	}
	err = errors.Join(err, w.f.Sync(), w.f.Close())
	w.f, w.gz, w.bw = nil, nil, nil
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// Close ends the current file.
func (w *Writer) Close() error { return w.closeFile() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Files returns the archive's files in the order they were written.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var files []string
	for _, e := range entries {
		if _, ok := seqOf(e.Name()); ok && !e.IsDir() {
			files = append(files, e.Name())
		}
	}
	slices.SortFunc(files, func(a, b string) int {
		x, _ := seqOf(a)
		y, _ := seqOf(b)
		return x - y
	})
	return files, nil
}

func seqOf(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "changes-")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(strings.TrimSuffix(rest, ".gz"), ".ndjson")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0 && n < math.MaxInt32
}

// Stats says what a read of an archive found.
type Stats struct {
	Files, Changes int
	Repeated       int // copies of a position already read (a restart's replay)
	CutTails       int // files that end in a line cut short (a crash)
}

// Read hands fn every archived change once, in the order they were
// applied: a change at a position already read in its stream is skipped,
// and a file's cut last line ends that file. A line that is whole but
// not an archived change is an error naming the file and line.
func Read(dir string, fn func(ev *change.Event) error) (Stats, error) {
	var st Stats
	files, err := Files(dir)
	if err != nil {
		return st, err
	}
	last := map[string]change.Position{}
	seen := map[string]bool{}
	for _, name := range files {
		st.Files++
		if err := readFile(filepath.Join(dir, name), &st, func(n int, line []byte) error {
			ev, err := Decode(line)
			if err != nil {
				return fmt.Errorf("%s line %d: %w", name, n, err)
			}
			if p := last[ev.Stream]; seen[ev.Stream] && !p.Less(ev.Pos) {
				st.Repeated++
				return nil
			}
			last[ev.Stream], seen[ev.Stream] = ev.Pos, true
			st.Changes++
			return fn(&ev)
		}); err != nil {
			return st, err
		}
	}
	return st, nil
}

func readFile(path string, st *Stats, fn func(n int, line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			st.CutTails++ // cut before its first block
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive %s: %w", filepath.Base(path), err)
		}
		r = gz
	}
	br := bufio.NewReaderSize(r, 256<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == nil {
			if err := fn(n, line); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A line cut short, or a compressed stream without its end
			// (the file being written, or one a crash ended).
			if len(line) > 0 {
				st.CutTails++
			}
			return nil
		}
		return fmt.Errorf("archive %s line %d: %w", filepath.Base(path), n, err)
	}
}

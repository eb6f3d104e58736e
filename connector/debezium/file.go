package debezium

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
)

// maxLine bounds one NDJSON line (one record).
const maxLine = 64 << 20

// File reads Debezium change events from NDJSON files, in order, for
// replay and backfill. Each line is a record value as the JsonConverter
// wrote it (with or without schema), or an object {"key": …, "value": …}
// holding both (other members, such as topic or offset, are ignored).
// Blank lines are skipped. "-" reads standard input.
//
// Files are read from their start on every run: the changes that are
// durable already take the positions they took before and are skipped, so
// a replay interrupted at any point and run again applies each change
// once. Stream returns io.EOF after the last line.
type File struct {
	paths []string
	dec   *decode.Debezium
	log   *slog.Logger
	stdin io.Reader
}

// NewFile returns a source reading paths.
func NewFile(paths []string, dec *decode.Debezium, log *slog.Logger) *File {
	return &File{paths: paths, dec: dec, log: log, stdin: os.Stdin}
}

// Ack does nothing: a file keeps no position.
func (f *File) Ack(connector.Checkpoint) {}

// Stream sends the changes of every file, then returns io.EOF.
func (f *File) Stream(ctx context.Context, from connector.Checkpoint, out chan<- change.Event) error {
	conv := NewConverter(from.Pos)
	send := func(ev change.Event) error { return emit(ctx, out, ev) }
	for _, path := range f.paths {
		n, err := f.read(path, conv, send)
		if err != nil {
			return err
		}
		f.log.Info("file read", "path", path, "records", n)
	}
	return io.EOF
}

// ReadFiles hands fn the changes of NDJSON files, in order, with the
// positions a File source gives them (markers and undecodable records
// included, as change.Invalid): a replay of what the files streamed.
func ReadFiles(ctx context.Context, paths []string, dec *decode.Debezium, fn func(*change.Event) error) error {
	f := &File{paths: paths, dec: dec, stdin: os.Stdin}
	conv := NewConverter(change.Position{})
	for _, path := range paths {
		if _, err := f.read(path, conv, func(ev change.Event) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(&ev)
		}); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) read(path string, conv *Converter, send func(change.Event) error) (int, error) {
	r := f.stdin
	name := "stdin"
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return 0, fmt.Errorf("%w: file.path: %w", connector.ErrFatal, err)
		}
		defer fh.Close()
		r, name = fh, path
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	records := 0
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		records++
		ev, ok := convertLine(f.dec, conv, name+":"+strconv.Itoa(line), text)
		if !ok {
			continue
		}
		if err := send(ev); err != nil {
			return records, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d MiB", maxLine>>20)
		}
		return records, fmt.Errorf("%w: read %s: %w", connector.ErrFatal, name, err)
	}
	return records, nil
}

// convertLine decodes one NDJSON line; ok is false for a record that
// carries no change.
func convertLine(dec *decode.Debezium, conv *Converter, origin string, text []byte) (change.Event, bool) {
	key, value := splitRecord(text)
	ev, ok := record(dec.DecodeJSON, conv, origin, key, value)
	if ev.Op == change.Invalid {
		ev = Invalid(origin, text, ev.Err) // the whole line, key and all
	}
	return ev, ok
}

// splitRecord tells a {"key", "value"} line from a bare record value.
func splitRecord(text []byte) (key, value []byte) {
	var rec map[string]json.RawMessage
	if json.Unmarshal(text, &rec) != nil {
		return nil, text
	}
	v, hasValue := rec["value"]
	if !hasValue {
		return nil, text
	}
	for _, member := range []string{"payload", "schema", "op", "before", "after", "source", "status"} {
		if _, ok := rec[member]; ok {
			return nil, text // a record value that happens to have a "value" member
		}
	}
	return rec["key"], v
}

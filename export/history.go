package export

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tilefeed/tilefeed/archive"
	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/export/internal/spill"
	"github.com/tilefeed/tilefeed/transform"
)

// history is where an export's changes come from (source=table or
// source=replay): a group's changes entity by entity, each entity's in
// the order they apply, with the instant each becomes visible to a read.
type history interface {
	// each hands fn the changes; only, when not "", is the entity whose
	// updates fn must apply (a change that moves a row between entities is
	// handed to each of them).
	each(ctx context.Context, g *transform.Group, from time.Time, fn func(ev *change.Event, visible time.Time, only string) error) error
	estimate(ctx context.Context, g *transform.Group) int64 // 0: unknown
	what() string                                           // what is replayed, for progress
	needsTime() bool                                        // whether groups need a time column
}

// tableHistory is source=table: the table's rows as they are now, each
// visible from its event time.
type tableHistory struct{ src Table }

func (h tableHistory) each(ctx context.Context, g *transform.Group, from time.Time, fn func(*change.Event, time.Time, string) error) error {
	var n uint64
	return h.src.Read(ctx, g.Table, g.Entity, g.TimeCol, from, func(row change.Row) error {
		at, ok := eventTime(row[g.TimeCol])
		if !ok {
			return fmt.Errorf("column %s holds %v, not a time", g.TimeCol, row[g.TimeCol])
		}
		n++
		ev := change.Event{Op: change.Read, Table: g.Table, After: row, Pos: change.Position{LSN: n}, CommitTime: at}
		return fn(&ev, at, "")
	})
}

func (h tableHistory) estimate(ctx context.Context, g *transform.Group) int64 {
	if e, ok := h.src.(Estimator); ok {
		return e.Estimate(ctx, g.Table)
	}
	return 0
}

func (h tableHistory) what() string    { return "rows" }
func (h tableHistory) needsTime() bool { return true }

// archiveHistory is source=replay: the changes tilefeed applied, read
// from its archive (archive.dir), each visible from its commit time, so
// that a read as of T sees exactly what tilefeed served at T.
type archiveHistory struct {
	// read hands fn each change once, in the order they were applied.
	read   func(ctx context.Context, fn func(*change.Event) error) error
	name   string // where the changes come from, for errors
	engine *transform.Engine
	tmp    string
	budget int
	// skipped counts changes the engine refused (dead letters, when the
	// stream ran with errors.tolerance=all).
	skipped int
}

// archived is one change under one of the entities it updates, in the
// order it was applied.
type archived struct {
	id   string
	seq  uint64
	line []byte
}

var archivedCodec = spill.Codec[archived]{
	Compare: func(a, b archived) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	},
	Size: func(a archived) int { return len(a.id) + len(a.line) + 48 },
	Append: func(b []byte, a archived) []byte {
		b = appendText(b, a.id)
		b = binary.AppendUvarint(b, a.seq)
		return append(b, a.line...)
	},
	Decode: func(b []byte) (archived, error) {
		id, b, err := readText(b)
		if err != nil {
			return archived{}, err
		}
		seq, n := binary.Uvarint(b)
		if n <= 0 {
			return archived{}, errCorrupt
		}
		return archived{id: id, seq: seq, line: slices.Clone(b[n:])}, nil
	},
}

func (h *archiveHistory) each(ctx context.Context, g *transform.Group, _ time.Time, fn func(*change.Event, time.Time, string) error) error {
	sorted := spill.New(h.tmp, h.budget, archivedCodec)
	defer sorted.Close()
	var ups []transform.Update
	var seq uint64
	err := h.read(ctx, func(ev *change.Event) error {
		if ev.Table != g.Table {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if ups, err = h.engine.Plan(ev, ups[:0]); err != nil {
			var de *transform.DataError
			if errors.As(err, &de) {
				h.skipped++ // dead-lettered when it streamed, or it stopped the stream
				return nil
			}
			return err
		}
		var line []byte
		var ids []string
		for _, u := range ups {
			if u.Group != g || slices.Contains(ids, u.Key.ID) {
				continue
			}
			ids = append(ids, u.Key.ID)
			if line == nil {
				if line, err = archive.Encode(ev); err != nil {
					return err
				}
			}
			if err := sorted.Add(archived{id: u.Key.ID, seq: seq, line: line}); err != nil {
				return err
			}
		}
		seq++
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	it, err := sorted.Merge()
	if err != nil {
		return err
	}
	for {
		a, ok, err := it.Next()
		if err != nil || !ok {
			return err
		}
		ev, err := archive.Decode(a.line)
		if err != nil {
			return err
		}
		if err := fn(&ev, ev.CommitTime, a.id); err != nil {
			return err
		}
	}
}

func (h *archiveHistory) estimate(context.Context, *transform.Group) int64 { return 0 }
func (h *archiveHistory) what() string                                     { return "archived changes" }
func (h *archiveHistory) needsTime() bool                                  { return false }

// readArchive reads tilefeed's archive in dir.
func readArchive(dir string) func(context.Context, func(*change.Event) error) error {
	return func(_ context.Context, fn func(*change.Event) error) error {
		_, err := archive.Read(dir, fn)
		return err
	}
}

// once wraps a source of changes that may repeat positions (a Debezium
// file written by a connector that restarted) so that each position is
// handed on once, as the runtime's guard does.
func once(read func(context.Context, func(*change.Event) error) error) func(context.Context, func(*change.Event) error) error {
	return func(ctx context.Context, fn func(*change.Event) error) error {
		last := map[string]change.Position{}
		seen := map[string]bool{}
		return read(ctx, func(ev *change.Event) error {
			if ev.Op == change.Invalid {
				return fmt.Errorf("record %s: %w", ev.Origin, ev.Err)
			}
			if ev.Op.IsMarker() || ev.Op == change.Truncate {
				return nil
			}
			if p := last[ev.Stream]; seen[ev.Stream] && !p.Less(ev.Pos) {
				return nil
			}
			last[ev.Stream], seen[ev.Stream] = ev.Pos, true
			return fn(ev)
		})
	}
}

package postgres

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/sync/errgroup"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/sink"
)

// The snapshot (snapshot.mode initial, initial_only, always, when_needed).
//
// The slot is created with an exported snapshot; its consistent point P1
// is where streaming starts. Every row of the feature tables, as of that
// snapshot, becomes a Read event at position (P1 − 1, n): after
// everything the sink holds and before every streamed transaction, whose
// commits come at or after P1. A final Commit marker carries Resume = P1.
//
// Tables are read in chunks (snapshot.fetch.size rows, in primary key
// order, or ranges of heap blocks) by snapshot.max.threads connections
// that all import the exported snapshot. A sequencer gives each chunk its
// ordinals and hands it to the runtime whole, in ordinal order, after
// writing it ahead to the sink (the staging records) together with the
// progress record. After a crash the snapshot resumes: chunks durable in
// the sink are skipped, staged chunks are replayed from the sink with their
// positions, and the rest is read at a new consistent point P2 (a
// temporary slot's exported snapshot); until the stream passes P2, the
// stream drops what that read already holds (snapFilter). The argument is
// in docs/exactly-once.md.

// ErrSnapshotDone is returned by Stream under snapshot.mode=initial_only
// once the snapshot is durable (and the slot dropped): a clean end, the
// end of the source's input (it wraps io.EOF, see connector.Source).
var ErrSnapshotDone = fmt.Errorf("snapshot complete (snapshot.mode=initial_only): %w", io.EOF)

// snapshot runs one snapshot (fresh, or resumed from prog).
type snapshot struct {
	st    *stream
	prog  *progress // nil: a fresh snapshot
	store connector.Store
	name  string

	mu      sync.Mutex // the sequencer: ordinals, progress, sending
	at      time.Time  // when this run's reads started
	point   uint64     // the consistent point this run reads at
	started time.Time
	rows    int64 // rows read from the database by this run
	done    int64 // rows handed over, all tables, all runs
	total   int64 // estimated rows
}

// run takes (or resumes) the snapshot on the replication connection repl,
// which then streams from the slot's consistent point.
func (sn *snapshot) run(ctx context.Context, repl *pgconn.PgConn) error {
	st := sn.st
	sn.started = time.Now()
	var snapName string
	fresh := sn.prog == nil
	if fresh {
		cp, name, err := createSlot(ctx, repl, st.cfg.SlotName, false, true)
		if err != nil {
			return err
		}
		st.log.Info("created replication slot; taking the snapshot", "slot", st.cfg.SlotName,
			"consistent_point", change.FormatLSN(cp), "snapshot", name, "tables", st.tables,
			"threads", st.cfg.SnapshotThreads, "fetch_size", st.cfg.SnapshotFetch)
		sn.point, snapName = cp, name
		sn.prog = &progress{Slot: cp, Next: 1, replace: true}
	}
	p := sn.prog
	durable := p.durable(st.fromPos)
	var gone []sink.Key // staged chunks the checkpoint covers: expired with the next save
	if !fresh {
		gone = sn.forgetDurable(durable)
		if sn.remaining() {
			// What is left is read at a new consistent point: a temporary
			// slot's exported snapshot (dropped when its connection closes).
			tmp, err := st.replicationConn(ctx)
			if err != nil {
				return err
			}
			defer tmp.Close(context.WithoutCancel(ctx))
			sn.point, snapName, err = createSlot(ctx, tmp, tempSlotName(st.cfg.SlotName), true, true)
			if err != nil {
				return fmt.Errorf("resume the snapshot: %w", err)
			}
		}
		st.log.Info("resuming the snapshot", "slot", st.cfg.SlotName, "slot_point", change.FormatLSN(p.Slot),
			"durable_rows", min(durable, p.Next-1), "staged_chunks", len(p.Staged), "read_point", change.FormatLSN(sn.point))
	}

	var workers []*snapWorker
	defer func() {
		for _, w := range workers {
			w.close(context.WithoutCancel(ctx))
		}
	}()
	if snapName != "" {
		for range max(st.cfg.SnapshotThreads, 1) {
			w, err := sn.openWorker(ctx, snapName)
			if err != nil {
				return err
			}
			workers = append(workers, w)
		}
		if err := workers[0].tx.QueryRow(ctx, "SELECT now()").Scan(&sn.at); err != nil {
			return err
		}
		sn.at = sn.at.UTC()
		if fresh {
			p.At = sn.at
			for _, t := range st.tables {
				tp, err := sn.plan(ctx, workers[0].tx, t)
				if err != nil {
					return fmt.Errorf("plan the snapshot of %s: %w", t, err)
				}
				p.Tables = append(p.Tables, tp)
			}
		} else if err := sn.replan(ctx, workers[0].tx); err != nil {
			return err
		}
		// The read point is durable before any row read at it is sent.
		if err := sn.save(ctx, gone); err != nil {
			return err
		}
	}
	for _, t := range p.Tables {
		sn.total += max(t.Estimate, t.Rows)
		sn.done += t.Rows
		st.metrics.SnapshotEstimated.WithLabelValues(t.Name).Set(float64(max(t.Estimate, t.Rows)))
		st.metrics.SnapshotDone.WithLabelValues(t.Name).Set(float64(t.Rows))
	}
	if err := sn.replay(ctx, durable); err != nil {
		return err
	}
	if len(workers) > 0 {
		if err := sn.readAll(ctx, workers); err != nil {
			return err
		}
		for _, w := range workers {
			if err := w.tx.Commit(ctx); err != nil {
				return err
			}
		}
	}
	return sn.finish(ctx)
}

// remaining reports whether anything is left to read from the database.
func (sn *snapshot) remaining() bool {
	for _, t := range sn.prog.Tables {
		if !t.finished() {
			return true
		}
	}
	return false
}

// forgetDurable drops the staged chunks the checkpoint covers. A chunk of
// a table read by ctid stays until that table is read to its end (a crash
// before then has it retracted), and a chunk stays while a retraction
// that is not durable yet reads it.
func (sn *snapshot) forgetDurable(durable uint32) []sink.Key {
	finished := map[string]bool{}
	for _, t := range sn.prog.Tables {
		finished[t.Name] = t.finished()
	}
	retracting := map[string]bool{}
	for _, c := range sn.prog.Staged {
		if c.Of != "" && c.last() > durable {
			retracting[c.Of] = true
		}
	}
	var gone []sink.Key
	kept := sn.prog.Staged[:0]
	for _, c := range sn.prog.Staged {
		if c.last() <= durable && (!c.Keep || finished[c.Table]) && !retracting[c.ID()] {
			for i := range c.Parts {
				gone = append(gone, stagingKey(sn.name, c.ID(), i))
			}
			continue
		}
		kept = append(kept, c)
	}
	sn.prog.Staged = kept
	return gone
}

// replan prepares a resumed snapshot's reads at sn.point: unfinished key
// ranges are read there (and the stream will drop what they hold), and a
// table read by ctid that was not finished is read again whole, after the
// rows of it already handed over are retracted.
func (sn *snapshot) replan(ctx context.Context, tx pgx.Tx) error {
	p := sn.prog
	p.Points = append(p.Points, sn.point)
	for _, t := range p.Tables {
		if t.finished() {
			continue
		}
		if len(t.Key) > 0 {
			for _, s := range t.Segments {
				if s.Done {
					continue
				}
				lo := s.Lo
				if s.Last != nil {
					lo = s.Last
				}
				t.Reads = append(t.Reads, keyRange{Lo: lo, Hi: s.Hi, Point: sn.point})
			}
			continue
		}
		// A ctid range says nothing about which rows a change touches, so
		// the table is read again whole at the new point.
		for _, c := range p.Staged {
			if c.Table != t.Name || c.Of != "" || c.Retracted {
				continue
			}
			c.Retracted = true
			r := &stagedChunk{Table: t.Name, First: p.Next, Rows: c.Rows,
				At: sn.at, Of: c.ID(), Keep: true}
			p.Next += c.Rows
			p.Staged = append(p.Staged, r)
		}
		fresh, err := sn.plan(ctx, tx, t.Name)
		if err != nil {
			return fmt.Errorf("plan the snapshot of %s: %w", t.Name, err)
		}
		t.Segments, t.BlocksPerChunk, t.Rows, t.ReadAt = fresh.Segments, fresh.BlocksPerChunk, 0, sn.point
		sn.st.log.Info("snapshot: reading again a table without a usable key", "table", t.Name, "read_point", change.FormatLSN(sn.point))
	}
	return nil
}

// replay hands the staged chunks that are not durable to the runtime
// again, with their positions: a record that has a chunk's row already is
// skipped by its stored position.
func (sn *snapshot) replay(ctx context.Context, durable uint32) error {
	if sn.store == nil {
		return nil
	}
	types := pgtype.NewMap()
	byID := map[string]*stagedChunk{}
	for _, c := range sn.prog.Staged {
		byID[c.ID()] = c
	}
	for _, c := range sn.prog.Staged {
		if c.last() <= durable {
			continue
		}
		src := c
		if c.Of != "" {
			if src = byID[c.Of]; src == nil {
				return fmt.Errorf("%w: snapshot retraction %s: staged chunk %s is not in the progress record", connector.ErrFatal, c.ID(), c.Of)
			}
		}
		rows, err := readStaged(ctx, sn.store, sn.name, src, types)
		if err != nil {
			return err
		}
		for i, row := range rows {
			ev := change.Event{Op: change.Read, Table: c.Table, After: row, CommitTime: c.At,
				Pos: change.Position{LSN: sn.prog.Slot - 1, Ordinal: c.First + uint32(i)}}
			if c.Of != "" {
				ev.Op, ev.Before, ev.After = change.Delete, row, nil
			}
			if err := sn.st.sendSnapshot(ctx, ev); err != nil {
				return err
			}
		}
		sn.st.metrics.SnapshotChunks.WithLabelValues("replayed").Inc()
		sn.st.log.Info("snapshot: staged chunk replayed", "table", c.Table, "chunk", c.ID(), "rows", c.Rows, "retraction", c.Of != "")
	}
	return nil
}

// finish sends the commit marker, waits until it is durable, and clears
// what the snapshot kept in the sink.
func (sn *snapshot) finish(ctx context.Context) error {
	st, p := sn.st, sn.prog
	at := p.At
	for _, c := range p.Staged {
		if c.At.After(at) {
			at = c.At
		}
	}
	if sn.at.After(at) {
		at = sn.at
	}
	if err := st.sendSnapshot(ctx, change.Event{Op: change.Commit, Pos: change.Position{LSN: p.Slot - 1, Ordinal: p.Next},
		CommitTime: at, Resume: p.Slot}); err != nil {
		return err
	}
	if sn.store != nil {
		// Staging is only dropped once nothing can need it again.
		for st.acked.Load() < p.Slot {
			if !connector.Sleep(ctx, 20*time.Millisecond) {
				return ctx.Err()
			}
		}
		var gone []sink.Key
		for _, c := range p.Staged {
			for i := range c.Parts {
				gone = append(gone, stagingKey(sn.name, c.ID(), i))
			}
		}
		p.Staged = nil
		if p.maxPoint() > p.Slot {
			// The stream needs the read ranges until it passes the last point.
			if err := sn.save(ctx, nil); err != nil {
				return err
			}
		} else {
			gone = append(gone, progressKey(sn.name))
		}
		if err := expireRecords(ctx, sn.store, gone); err != nil {
			return fmt.Errorf("drop the snapshot's staging records: %w", err)
		}
	}
	if st.opts.Progress != nil {
		fmt.Fprintln(st.opts.Progress)
	}
	st.log.Info("snapshot complete; streaming from the consistent point", "rows", sn.done, "rows_read", sn.rows,
		"seconds", time.Since(sn.started).Seconds(), "rows_per_s", int(float64(sn.rows)/time.Since(sn.started).Seconds()),
		"consistent_point", change.FormatLSN(p.Slot))
	return nil
}

// save writes the progress record, then lets gone expire.
func (sn *snapshot) save(ctx context.Context, gone []sink.Key) error {
	if sn.store == nil {
		return nil
	}
	rec, err := sn.prog.record(sn.name)
	if err != nil {
		return err
	}
	if sn.prog.replace {
		// The first write of a fresh snapshot: an earlier snapshot's record
		// (abandoned) is replaced, not compared. Later writes compare
		// generations: a second writer is caught.
		rec.Gen = sink.AnyGen
	}
	recs := []sink.Record{rec}
	if err := sn.store.Put(ctx, recs); err != nil {
		return fmt.Errorf("write the snapshot progress: %w", err)
	}
	sn.prog.gen, sn.prog.replace = recs[0].Gen, false
	if len(gone) > 0 {
		if err := expireRecords(ctx, sn.store, gone); err != nil {
			return fmt.Errorf("drop staged snapshot chunks: %w", err)
		}
	}
	return nil
}

// snapWorker is one connection reading chunks in the exported snapshot.
type snapWorker struct {
	conn  *pgx.Conn
	tx    pgx.Tx
	types *pgtype.Map
}

func (sn *snapshot) openWorker(ctx context.Context, snapName string) (*snapWorker, error) {
	conn, err := pgx.Connect(ctx, sn.st.cfg.ConnString())
	if err != nil {
		return nil, fmt.Errorf("connect for the snapshot: %w", err)
	}
	w := &snapWorker{conn: conn, types: pgtype.NewMap()}
	if w.tx, err = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	if _, err := w.tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(snapName, "'", "''")+"'"); err != nil {
		w.close(ctx)
		return nil, fmt.Errorf("set transaction snapshot %s: %w", snapName, err)
	}
	return w, nil
}

func (w *snapWorker) close(ctx context.Context) {
	_ = w.tx.Rollback(ctx)
	w.conn.Close(ctx)
}

// plan decides how table is read: in primary key order when every key
// column has a type whose order Go reproduces exactly (the stream filter
// compares keys after a restart), else in ranges of heap blocks (ctid).
// With several threads, a table with one integer key column or read by
// ctid is cut into that many segments.
func (sn *snapshot) plan(ctx context.Context, tx pgx.Tx, table string) (*tableProgress, error) {
	threads := max(sn.st.cfg.SnapshotThreads, 1)
	fetch := int64(max(sn.st.cfg.SnapshotFetch, 1))
	t := &tableProgress{Name: table}
	var tuples float64
	var blocks int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::float8,
			COALESCE(max(pg_relation_size(c.oid) / current_setting('block_size')::int8), 0)::int8
		FROM (SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf UNION SELECT $1::regclass) p
		JOIN pg_class c ON c.oid = p.relid`, table).Scan(&tuples, &blocks); err != nil {
		return nil, err
	}
	t.Estimate = int64(tuples)
	rows, err := tx.Query(ctx, `SELECT a.attname, a.atttypid FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`, table)
	if err != nil {
		return nil, err
	}
	key, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keyCol, error) {
		var k keyCol
		return k, r.Scan(&k.Name, &k.OID)
	})
	if err != nil {
		return nil, err
	}
	for i := range key {
		if key[i].OID, _, err = sn.st.types.resolve(key[i].OID, -1); err != nil {
			return nil, err
		}
	}
	usable := len(key) > 0
	for _, k := range key {
		usable = usable && isOrderable(k.OID)
	}
	if usable {
		t.Key = key
		t.Segments = []*segment{{}}
		if len(key) == 1 && threads > 1 && t.Estimate > 2*fetch && k0Integer(key[0].OID) {
			col := pgx.Identifier{key[0].Name}.Sanitize()
			var lo, hi *int64
			if err := tx.QueryRow(ctx, "SELECT min("+col+")::int8, max("+col+")::int8 FROM "+quoteTable(table)).Scan(&lo, &hi); err != nil {
				return nil, err
			}
			if lo != nil && *hi-*lo > int64(threads) {
				t.Segments = nil
				var prev []string
				for i := 1; i <= threads; i++ {
					s := &segment{Lo: prev}
					if i < threads {
						b := *lo + (*hi-*lo)/int64(threads)*int64(i)
						s.Hi = []string{strconv.FormatInt(b, 10)}
						prev = s.Hi
					}
					t.Segments = append(t.Segments, s)
				}
			}
		}
		return t, nil
	}
	var capped bool
	t.BlocksPerChunk, capped = ctidChunk(blocks, tuples, fetch, threads)
	if capped {
		sn.st.log.Info("snapshot: big table without a usable key; chunks are bigger than snapshot.fetch.size",
			"table", table, "blocks", blocks, "blocks_per_chunk", t.BlocksPerChunk)
	}
	n := int64(threads)
	if blocks < n*t.BlocksPerChunk {
		n = 1
	}
	for i := range n {
		s := &segment{Block: blocks * i / n, To: blocks * (i + 1) / n, Open: i == n-1}
		t.Segments = append(t.Segments, s)
	}
	return t, nil
}

// ctidChunk returns how many heap blocks a chunk of a table read by ctid
// spans: about fetch rows, but so that the table has at most
// maxKeptChunks/threads chunks (every chunk stays in the progress record
// until the table is read to its end); capped says the bound applied. A
// ctid range on a partitioned table covers that range in every leaf:
// blocks is the biggest leaf's, tuples all leaves'.
func ctidChunk(blocks int64, tuples float64, fetch int64, threads int) (perChunk int64, capped bool) {
	perBlock := int64(50)
	if blocks > 0 && tuples > 0 {
		perBlock = max(int64(tuples)/blocks, 1)
	}
	perChunk = max(fetch/perBlock, 1)
	if limit := int64(max(maxKeptChunks/max(threads, 1), 1)); blocks/perChunk > limit {
		return (blocks + limit - 1) / limit, true
	}
	return perChunk, false
}

func k0Integer(oid uint32) bool {
	return oid == pgtype.Int2OID || oid == pgtype.Int4OID || oid == pgtype.Int8OID
}

// readAll reads every unfinished segment, threads at a time.
func (sn *snapshot) readAll(ctx context.Context, workers []*snapWorker) error {
	type job struct {
		t *tableProgress
		s *segment
	}
	// Segment i of every table before segment i+1 of any: the threads
	// start on different tables.
	var jobs []job
	for i, more := 0, true; more; i++ {
		more = false
		for _, t := range sn.prog.Tables {
			if i < len(t.Segments) {
				more = true
				if !t.Segments[i].Done {
					jobs = append(jobs, job{t, t.Segments[i]})
				}
			}
		}
	}
	next := make(chan job, len(jobs))
	for _, j := range jobs {
		next <- j
	}
	close(next)
	g, gctx := errgroup.WithContext(ctx)
	for _, w := range workers {
		g.Go(func() error {
			for j := range next {
				for !j.s.Done {
					c, err := sn.readChunk(gctx, w, j.t, j.s)
					if err != nil {
						return fmt.Errorf("snapshot of %s: %w", j.t.Name, err)
					}
					if err := sn.emit(gctx, c); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// chunk is what one query read, decoded, not yet numbered.
type chunk struct {
	t       *tableProgress
	s       *segment
	events  []change.Event
	raw     *rawRows
	last    []string // key chunks: the last key read
	block   int64    // ctid chunks: the next block
	done    bool     // the segment is finished
	elapsed time.Duration
}

func (sn *snapshot) readChunk(ctx context.Context, w *snapWorker, t *tableProgress, s *segment) (*chunk, error) {
	st := sn.st
	start := time.Now()
	fetch := max(st.cfg.SnapshotFetch, 1)
	var where []string
	args := []any{pgx.QueryExecModeSimpleProtocol}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args)-1)
	}
	c := &chunk{t: t, s: s}
	var order string
	if len(t.Key) > 0 {
		cols := make([]string, len(t.Key))
		for i, k := range t.Key {
			cols[i] = pgx.Identifier{k.Name}.Sanitize()
		}
		tuple := func(vals []string) string {
			ps := make([]string, len(vals))
			for i, v := range vals {
				ps[i] = param(v)
			}
			return "(" + strings.Join(ps, ", ") + ")"
		}
		lo := s.Lo
		if s.Last != nil {
			lo = s.Last
		}
		if lo != nil {
			where = append(where, "("+strings.Join(cols, ", ")+") > "+tuple(lo))
		}
		if s.Hi != nil {
			where = append(where, "("+strings.Join(cols, ", ")+") <= "+tuple(s.Hi))
		}
		order = " ORDER BY " + strings.Join(cols, ", ") + " LIMIT " + strconv.Itoa(fetch)
	} else {
		hi := s.Block + t.BlocksPerChunk
		where = append(where, fmt.Sprintf("ctid >= '(%d,0)'::tid", s.Block))
		if hi < s.To || !s.Open {
			where = append(where, fmt.Sprintf("ctid < '(%d,0)'::tid", min(hi, s.To)))
		}
		c.block = min(hi, s.To)
		c.done = hi >= s.To
	}
	// Window backfill: when every group on the table only has windowed
	// aggregates, rows older than the longest window are not read.
	if col, from, ok := st.backfillFrom(t.Name, sn.prog.At); ok {
		where = append(where, pgx.Identifier{col}.Sanitize()+" >= "+param(from))
	}
	query := "SELECT * FROM " + quoteTable(t.Name)
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := w.tx.Query(ctx, query+order, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	keyIdx := make([]int, len(t.Key))
	for i, k := range t.Key {
		keyIdx[i] = -1
		for j, f := range fields {
			if f.Name == k.Name {
				keyIdx[i] = j
			}
		}
		if keyIdx[i] < 0 {
			return nil, fmt.Errorf("key column %s is not in the result", k.Name)
		}
	}
	var keep []int
	var cols []string
	var oids []uint32
	for i, f := range fields {
		if st.cfg.CapturesColumn(t.Name + "." + f.Name) {
			keep = append(keep, i)
			cols = append(cols, f.Name)
			// The row description names a domain by its base type
			// already, but an array of a domain by its own type.
			oid, _, err := st.types.resolve(f.DataTypeOID, f.TypeModifier)
			if err != nil {
				return nil, err
			}
			oids = append(oids, oid)
		}
	}
	c.raw = newRawRows(cols, oids)
	vals := make([][]byte, len(keep))
	n := 0
	for rows.Next() {
		raw := rows.RawValues()
		row := make(change.Row, len(keep))
		for j, i := range keep {
			vals[j] = raw[i]
			if raw[i] == nil {
				row[cols[j]] = nil
				continue
			}
			v, err := decode.DecodeText(w.types, oids[j], raw[i])
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", cols[j], err)
			}
			row[cols[j]] = v
		}
		c.raw.add(vals)
		c.events = append(c.events, change.Event{Op: change.Read, Table: t.Name, After: row})
		n++
		if len(t.Key) > 0 {
			last := make([]string, len(keyIdx))
			for i, j := range keyIdx {
				last[i] = string(raw[j])
			}
			c.last = last
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(t.Key) > 0 {
		c.done = n < fetch
	}
	c.elapsed = time.Since(start)
	return c, nil
}

// emit is the sequencer: it numbers a chunk, writes it ahead to the sink
// with the progress, and hands it to the runtime whole. Chunks enter the
// runtime's queue in ordinal order, and at most one chunk per worker
// waits here, so memory is bounded by threads × chunk.
func (sn *snapshot) emit(ctx context.Context, c *chunk) error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	st, p := sn.st, sn.prog
	n := uint32(len(c.events))
	if uint64(p.Next)+uint64(n) >= math.MaxUint32 {
		return fmt.Errorf("more than %d rows: too many for one snapshot", math.MaxUint32-1)
	}
	first := p.Next
	at := sn.at
	if n > 0 && sn.store != nil {
		sc := &stagedChunk{Table: c.t.Name, First: first, Rows: n, At: at, Keep: len(c.t.Key) == 0}
		if err := sn.stage(ctx, sc, c.raw.buf); err != nil {
			return err
		}
		p.Staged = append(p.Staged, sc)
	}
	p.Next += n
	c.t.Rows += int64(n)
	if c.last != nil {
		c.s.Last = c.last
	}
	if len(c.t.Key) == 0 {
		c.s.Block = c.block
	}
	c.s.Done = c.done
	var gone []sink.Key
	if pos := st.ackedPos.Load(); pos != nil {
		gone = sn.forgetDurable(p.durable(*pos))
	}
	if err := sn.save(ctx, gone); err != nil {
		return err
	}
	for i := range c.events {
		ev := c.events[i]
		ev.Pos = change.Position{LSN: p.Slot - 1, Ordinal: first + uint32(i)}
		ev.CommitTime = at
		if err := st.sendSnapshot(ctx, ev); err != nil {
			return err
		}
	}
	sn.rows += int64(n)
	sn.done += int64(n)
	st.metrics.SnapshotRows.WithLabelValues(c.t.Name).Add(float64(n))
	st.metrics.SnapshotDone.WithLabelValues(c.t.Name).Set(float64(c.t.Rows))
	st.metrics.SnapshotChunks.WithLabelValues("read").Inc()
	if c.t.Rows > c.t.Estimate {
		sn.total += c.t.Rows - max(c.t.Estimate, c.t.Rows-int64(n))
		st.metrics.SnapshotEstimated.WithLabelValues(c.t.Name).Set(float64(c.t.Rows))
	}
	rate := int(float64(sn.rows) / time.Since(sn.started).Seconds())
	st.log.Info("snapshot: chunk", "table", c.t.Name, "chunk", first, "rows", n, "read_ms", c.elapsed.Milliseconds(),
		"rows_per_s", rate, "table_rows", c.t.Rows, "table_estimated", max(c.t.Estimate, c.t.Rows), "segment_done", c.done)
	if st.opts.Progress != nil {
		drawBar(st.opts.Progress, sn.done, sn.total, rate)
	}
	return nil
}

// stage writes a chunk's rows ahead, in parts small enough for a record.
func (sn *snapshot) stage(ctx context.Context, c *stagedChunk, b []byte) error {
	var recs []sink.Record
	for part := 0; len(b) > 0 || part == 0; part++ {
		n := min(len(b), stagingPart)
		// A crash after a staging write and before the progress that names
		// it leaves a record under the same key, and so may an earlier
		// snapshot: replace it, whatever its generation.
		recs = append(recs, sink.Record{Key: stagingKey(sn.name, c.ID(), part), Gen: sink.AnyGen, TTL: stagingTTL,
			Bins: map[string]any{"rows": append([]byte(nil), b[:n]...)}})
		b = b[n:]
	}
	c.Parts = len(recs)
	if err := sn.store.Put(ctx, recs); err != nil {
		return fmt.Errorf("stage snapshot chunk %s: %w", c.ID(), err)
	}
	return nil
}

// sendSnapshot hands a snapshot event to the runtime; the replication
// connection is not streaming yet, so there is no status to keep sending.
func (st *stream) sendSnapshot(ctx context.Context, ev change.Event) error {
	select {
	case st.out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backfillFrom returns the time column and the earliest event time the
// snapshot of table must read, when all its groups agree on a column and
// none needs every row.
func (st *stream) backfillFrom(table string, at time.Time) (col string, from time.Time, ok bool) {
	if st.engine == nil {
		return "", time.Time{}, false
	}
	for _, g := range st.engine.Groups() {
		if g.Table != table {
			continue
		}
		f, gok := g.BackfillFrom(at)
		if !gok || (col != "" && col != g.TimeCol) {
			return "", time.Time{}, false
		}
		if col == "" || f.Before(from) {
			from = f
		}
		col = g.TimeCol
	}
	// A day of margin covers a timestamp or date column compared in the
	// session's time zone; Apply skips the extra rows.
	return col, from.Add(-24 * time.Hour), col != ""
}

// drawBar redraws the snapshot's progress bar on a terminal.
func drawBar(w io.Writer, done, total int64, rate int) {
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	n := int(frac * width)
	fmt.Fprintf(w, "\rsnapshot [%s%s] %3.0f%%  %d/%d rows  %d rows/s ", strings.Repeat("#", n), strings.Repeat(" ", width-n),
		frac*100, done, total, rate)
}

// tempSlotName names the temporary slot of a resumed snapshot (slot names
// have at most 63 characters).
func tempSlotName(slot string) string {
	return slot[:min(len(slot), 58)] + "_snap"
}

package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// Source is what the runtime needs from a change source.
type Source interface {
	// Stream sends the events that follow from (the durable checkpoint; the
	// zero Checkpoint on a first start) to out until ctx ends, then returns
	// ctx.Err(), or returns the error that stopped it. Before returning it
	// passes the last acknowledged position on to the database. A source
	// whose input ends (a file) returns io.EOF once it has sent its last
	// event; Run then applies what is queued and returns io.EOF.
	Stream(ctx context.Context, from Checkpoint, out chan<- change.Event) error
	// Ack tells the source that everything up to cp is durable. It must
	// not block, and must not modify cp (its maps are shared).
	Ack(cp Checkpoint)
}

// Store is what the runtime needs from a sink store.
type Store interface {
	Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error)
	Put(ctx context.Context, recs []sink.Record) error
}

// Options tune a Runtime.
type Options struct {
	BatchMax int
	// SnapshotBatchMax is BatchMax for a batch that starts with a snapshot
	// row (change.Read), when larger: such rows spread over many entities,
	// and a larger batch writes each record fewer times.
	SnapshotBatchMax int
	QueueMax         int
	CacheEntities    int // most records in the cache
	CacheBytes       int // most bytes of records in the cache (State.MemSize)
	// ApplyWorkers is how many goroutines apply a batch and render its
	// records, each taking a share of the records; 0 means GOMAXPROCS.
	ApplyWorkers   int
	IdleCheckpoint time.Duration // how often progress on an idle stream is made durable
	// StopTimeout bounds the final batch after a stop was asked for.
	StopTimeout time.Duration
	// DeadLetterSet, when set, turns a change a feature group cannot use
	// into a record in this set (errors.tolerance=all) instead of a fatal
	// error (errors.tolerance=none).
	DeadLetterSet string
	// LogDeadLetters logs each dead-lettered change at WARN.
	LogDeadLetters bool
	// Archive, when set, gets each batch's new changes, durably, before
	// the batch is written to the store (archive.dir).
	Archive Archive
}

// Archive keeps the changes the runtime applies (archive.Writer).
type Archive interface {
	// Append makes the changes durable in the archive before it returns.
	Append(evs []*change.Event) error
}

// Checkpoint is the connector's durable progress, stored in the sink.
type Checkpoint struct {
	// Pos is the last change applied; later changes are new.
	Pos change.Position
	// Resume is where the source restarts: the end of the last transaction
	// (or idle heartbeat) whose changes are all durable.
	Resume uint64
	// Streams holds the progress of each named stream of a source that
	// has several (Kafka partitions). Never modified once checkpointed:
	// a new checkpoint gets a new map.
	Streams map[string]StreamPos
	// Marker is the last Event.Marker made durable: the last unit of input
	// a source knows durable whole (the HTTP source's last request).
	Marker string
	// Changes counts the row changes applied since the first start: each
	// exactly once, however often a crash made tilefeed read them again.
	Changes int64
	Written time.Time
	// LastCommit is the commit time of the last change applied, Groups
	// each feature group's counts and DeadLetters the dead letters written,
	// all since the first start, so the status shows them after a restart.
	// Groups is never modified once checkpointed, as Streams.
	LastCommit  time.Time
	Groups      map[string]GroupStatus
	DeadLetters int64
}

// StreamPos is one named stream's durable progress.
type StreamPos struct {
	// Pos is the last change applied from the stream.
	Pos change.Position
	// Offset is where the stream resumes (a Kafka partition's next
	// offset); 0 when the source has told none.
	Offset int64
}

// streamPos returns the progress of stream, Pos and Resume for "".
func (c *Checkpoint) streamPos(stream string) change.Position {
	if stream == "" {
		return c.Pos
	}
	return c.Streams[stream].Pos
}

// same reports whether c and d record the same progress.
// describe names where c is, for messages: its position, or its streams.
func (c *Checkpoint) describe() string {
	if len(c.Streams) > 0 {
		return fmt.Sprintf("%d streams (%s)", len(c.Streams), streamsText(c.Streams, 3))
	}
	return "position " + c.Pos.String()
}

func (c *Checkpoint) same(d *Checkpoint) bool {
	if c.Pos != d.Pos || c.Resume != d.Resume || c.Changes != d.Changes || c.Marker != d.Marker || len(c.Streams) != len(d.Streams) {
		return false
	}
	for k, v := range c.Streams {
		if w, ok := d.Streams[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// Runtime runs one connector.
type Runtime struct {
	name    string
	src     Source
	store   Store
	engine  *transform.Engine
	log     *slog.Logger
	metrics *Metrics
	opts    Options

	cache *cache
	cp    Checkpoint // durable
	// ahead is cp plus progress received but not yet written: idle
	// progress (heartbeats, offsets of records without a change) waits up
	// to IdleCheckpoint, and Run writes it then if nothing else does.
	ahead   Checkpoint
	cpGen   uint32
	lastCkp time.Time

	mu     sync.Mutex
	status Status
}

// Status is a snapshot of a runtime's progress, safe to show anyone.
type Status struct {
	Connector    string                 `json:"connector"`
	State        string                 `json:"state"` // starting, running, retrying, stopped, failed
	Received     string                 `json:"received_position,omitempty"`
	Durable      string                 `json:"durable_position,omitempty"`
	ResumeLSN    string                 `json:"resume_lsn,omitempty"`
	LastCommit   time.Time              `json:"last_commit_time,omitempty"`
	LastDurable  time.Time              `json:"last_durable_at,omitempty"`
	LagSeconds   float64                `json:"commit_to_durable_seconds"`
	SinkOK       bool                   `json:"sink_ok"`
	LastError    string                 `json:"last_error,omitempty"`
	Groups       map[string]GroupStatus `json:"groups"`
	ChangesTotal int64                  `json:"changes_applied"`
	// Offsets are where each stream of a multi-stream source resumes (a
	// Kafka partition's next offset), and StreamPositions the position of
	// its last durable change, as durable. Such a source has no single
	// position: Durable and ResumeLSN are then empty.
	Offsets         map[string]int64  `json:"stream_offsets,omitempty"`
	StreamPositions map[string]string `json:"stream_positions,omitempty"`
	DeadLetters     int64             `json:"dead_letters"`
}

// GroupStatus counts one feature group's work.
type GroupStatus struct {
	Changes   int64 `json:"changes_applied"`
	Records   int64 `json:"records_written"`
	Unmatched int64 `json:"retractions_unmatched"`
	// LastCommit is the commit time of the group's last change applied.
	LastCommit time.Time `json:"last_commit_time,omitzero"`
}

// New returns a runtime. Nothing happens until Run.
func New(name string, src Source, store Store, engine *transform.Engine, log *slog.Logger, m *Metrics, opts Options) *Runtime {
	if opts.BatchMax <= 0 {
		opts.BatchMax = 5000
	}
	if opts.QueueMax <= 0 {
		opts.QueueMax = 4 * opts.BatchMax
	}
	if opts.CacheEntities <= 0 {
		opts.CacheEntities = 1_000_000
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 64 << 20
	}
	if opts.IdleCheckpoint <= 0 {
		opts.IdleCheckpoint = 10 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 30 * time.Second
	}
	r := &Runtime{name: name, src: src, store: store, engine: engine, log: log, metrics: m, opts: opts,
		cache: newCache(opts.CacheEntities, opts.CacheBytes)}
	r.status = Status{Connector: name, State: "starting", Groups: map[string]GroupStatus{}}
	var groups []string
	for _, g := range engine.Groups() {
		r.status.Groups[g.Name] = GroupStatus{}
		groups = append(groups, g.Name)
	}
	m.known(groups, engine.Tables())
	return r
}

// Status returns a snapshot of the runtime's progress.
func (r *Runtime) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Offsets = maps.Clone(r.status.Offsets)
	s.StreamPositions = maps.Clone(r.status.StreamPositions)
	s.Groups = make(map[string]GroupStatus, len(r.status.Groups))
	for k, v := range r.status.Groups {
		s.Groups[k] = v
	}
	return s
}

func (r *Runtime) setStatus(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

func checkpointKey(name string) sink.Key { return sink.Key{Set: sink.CheckpointSet, ID: name} }

// LoadCheckpoint reads a connector's checkpoint from the store; ok is
// false when it has none (a first start).
func LoadCheckpoint(ctx context.Context, store Store, name string) (cp Checkpoint, gen uint32, ok bool, err error) {
	recs, err := store.Get(ctx, []sink.Key{checkpointKey(name)})
	if err != nil {
		return cp, 0, false, fmt.Errorf("read checkpoint of connector %q: %w", name, err)
	}
	r := recs[0]
	if r.Gen == 0 {
		return cp, 0, false, nil
	}
	lsn, _ := r.Bins["lsn"].(int64)
	ord, _ := r.Bins["ord"].(int64)
	resume, _ := r.Bins["resume"].(int64)
	written, _ := r.Bins["written"].(int64)
	changes, _ := r.Bins["changes"].(int64)
	seq, _ := r.Bins["seq"].(int64)
	cp = Checkpoint{Pos: change.Position{LSN: uint64(lsn), Seq: uint64(seq), Ordinal: uint32(ord)}, Resume: uint64(resume),
		Changes: changes, Written: time.UnixMicro(written).UTC()}
	cp.Marker, _ = r.Bins["marker"].(string)
	if commit, ok := r.Bins["commit"].(int64); ok {
		cp.LastCommit = time.UnixMicro(commit).UTC()
	}
	cp.DeadLetters, _ = r.Bins["dead"].(int64)
	if v, ok := r.Bins["groups"]; ok {
		if cp.Groups, err = decodeGroups(v); err != nil {
			return cp, 0, false, fmt.Errorf("%w: checkpoint of connector %q: bin groups: %w", ErrFatal, name, err)
		}
	}
	if v, ok := r.Bins["streams"]; ok {
		if cp.Streams, err = decodeStreams(v); err != nil {
			return cp, 0, false, fmt.Errorf("%w: checkpoint of connector %q: bin streams: %w", ErrFatal, name, err)
		}
	}
	return cp, r.Gen, true, nil
}

// Run streams until ctx ends (returning ctx.Err() after a clean stop: the
// batch in flight applied, its checkpoint written and acknowledged) or a
// fatal error stops it.
func (r *Runtime) Run(ctx context.Context) error {
	var err error
	var found bool
	for attempt := 0; ; attempt++ {
		r.cp, r.cpGen, found, err = LoadCheckpoint(ctx, r.store, r.name)
		if err == nil || ctx.Err() != nil {
			break
		}
		r.noteError("sink", err)
		if !Sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
	if ctx.Err() != nil {
		return ctx.Err() // stopped while reading the checkpoint
	}
	if err != nil {
		return err
	}
	switch {
	case !found:
		r.log.Info("no checkpoint: first start", "connector", r.name)
	case len(r.cp.Streams) > 0:
		r.log.Info("resuming from checkpoint", "connector", r.name, "streams", len(r.cp.Streams), "offsets", streamsText(r.cp.Streams, 5))
	default:
		r.log.Info("resuming from checkpoint", "connector", r.name, "position", r.cp.Pos.String(), "resume_lsn", change.FormatLSN(r.cp.Resume))
	}
	r.setStatus(func(s *Status) {
		s.State, s.SinkOK = "running", true
		s.setDurable(r.cp)
	})
	r.metrics.groupsDurable(r.cp.Groups)
	r.src.Ack(r.cp)
	r.ahead = r.cp
	r.lastCkp = time.Now()

	// The source gets a context of its own: on a stop, the runtime first
	// finishes its batch and acknowledges it, then stops the source, which
	// passes the acknowledgement on before it closes.
	srcCtx, stopSrc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrc()
	events := make(chan change.Event, r.opts.QueueMax)
	srcDone := make(chan error, 1)
	go func() { srcDone <- r.src.Stream(srcCtx, r.cp, events) }()

	// After a stop is asked for, the batch in flight gets StopTimeout to
	// become durable.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	unhook := context.AfterFunc(ctx, func() { time.AfterFunc(r.opts.StopTimeout, stopWork) })
	defer unhook()

	batch := make([]change.Event, 0, r.opts.BatchMax)
	for {
		batch = batch[:0]
		var srcErr error
		var flush <-chan time.Time // idle progress waiting to be written
		if !r.ahead.same(&r.cp) {
			flush = time.After(r.opts.IdleCheckpoint - time.Since(r.lastCkp))
		}
		select {
		case ev := <-events:
			batch = append(batch, ev)
		case <-flush:
		case srcErr = <-srcDone:
			if srcErr == nil {
				srcErr = errors.New("the source stopped streaming without an error")
			}
			if errors.Is(srcErr, io.EOF) {
				return r.finish(workCtx, events)
			}
		case <-ctx.Done():
		}
		if srcErr != nil {
			r.setStatus(func(s *Status) { s.State, s.LastError = "failed", srcErr.Error() })
			return srcErr
		}
		if ctx.Err() != nil && len(batch) == 0 {
			return r.stop(ctx, stopSrc, srcDone)
		}
		batch = r.drain(events, batch)
		if err = r.process(workCtx, batch); err != nil {
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return r.stop(ctx, stopSrc, srcDone)
			}
			r.setStatus(func(s *Status) { s.State, s.LastError = "failed", err.Error() })
			stopSrc()
			<-srcDone
			return err
		}
		if ctx.Err() != nil {
			return r.stop(ctx, stopSrc, srcDone)
		}
	}
}

// drain adds to batch what the queue holds, up to BatchMax
// (SnapshotBatchMax for snapshot rows), without waiting.
func (r *Runtime) drain(events chan change.Event, batch []change.Event) []change.Event {
	limit := r.opts.BatchMax
	if len(batch) > 0 && batch[0].Op == change.Read {
		limit = max(limit, r.opts.SnapshotBatchMax)
	}
	for len(batch) < limit {
		select {
		case ev := <-events:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

// finish applies what a source that reached the end of its input (it
// returned io.EOF) left in the queue, then reports io.EOF.
func (r *Runtime) finish(ctx context.Context, events chan change.Event) error {
	for {
		batch := r.drain(events, make([]change.Event, 0, r.opts.BatchMax))
		if len(batch) == 0 {
			break
		}
		if err := r.process(ctx, batch); err != nil {
			r.setStatus(func(s *Status) { s.State, s.LastError = "failed", err.Error() })
			return err
		}
	}
	r.setStatus(func(s *Status) { s.State = "finished" })
	r.log.Info("input read to its end; everything is durable", "connector", r.name, "changes", r.cp.Changes)
	return io.EOF
}

func (r *Runtime) stop(ctx context.Context, stopSrc context.CancelFunc, srcDone <-chan error) error {
	stopSrc()
	if err := <-srcDone; err != nil && !errors.Is(err, context.Canceled) {
		r.log.Warn("source stopped with an error", "err", err)
	}
	r.setStatus(func(s *Status) { s.State = "stopped" })
	r.log.Info("stopped", "connector", r.name, "durable_position", r.cp.Pos.String(), "resume_lsn", change.FormatLSN(r.cp.Resume))
	return ctx.Err()
}

// process makes one batch durable and acknowledges it, retrying store
// failures with back-off (the batch stays in memory, so order holds).
func (r *Runtime) process(ctx context.Context, batch []change.Event) error {
	start := time.Now()
	next := r.ahead
	var lastCommit time.Time
	var commits []time.Time // of the transactions this batch completes
	var updates []transform.Update
	var deadLetters []sink.Record
	var archived []*change.Event // the batch's new changes, for the archive
	reads := map[string]int{}
	streams := false // next.Streams is a copy of r.ahead.Streams
	for i := range batch {
		ev := &batch[i]
		if ev.Stream != "" && !streams {
			streams = true
			next.Streams = maps.Clone(r.ahead.Streams)
			if next.Streams == nil {
				next.Streams = map[string]StreamPos{}
			}
		}
		if ev.Marker != "" {
			next.Marker = ev.Marker // durable with this batch, whatever the event is
		}
		if ev.Offset != 0 && ev.Stream != "" {
			sp := next.Streams[ev.Stream]
			sp.Offset = max(sp.Offset, ev.Offset)
			next.Streams[ev.Stream] = sp
		}
		if ev.Op == change.Heartbeat {
			if ev.Resume > next.Resume {
				next.Resume = ev.Resume
			}
			continue
		}
		if ev.Op == change.Invalid {
			r.metrics.Errors.WithLabelValues("decode").Inc()
			if r.opts.DeadLetterSet == "" {
				return fmt.Errorf("%w: record %s: %w", ErrFatal, ev.Origin, ev.Err)
			}
			deadLetters = append(deadLetters, r.invalidLetter(ev))
			continue
		}
		if !next.streamPos(ev.Stream).Less(ev.Pos) {
			// Durable already (a replay after a restart), or read twice
			// across a reconnect: positions only grow within a stream.
			if !ev.Op.IsMarker() {
				r.metrics.ChangesSkipped.Inc()
			}
			continue
		}
		if ev.Stream == "" {
			next.Pos = ev.Pos
		} else {
			sp := next.Streams[ev.Stream]
			sp.Pos = ev.Pos
			next.Streams[ev.Stream] = sp
		}
		lastCommit = ev.CommitTime
		if ev.Op == change.Commit {
			next.Resume = ev.Resume
			if !ev.CommitTime.IsZero() {
				commits = append(commits, ev.CommitTime)
			}
			continue
		}
		reads[ev.Table]++
		next.Changes++
		if r.opts.Archive != nil && ev.Op != change.Truncate {
			archived = append(archived, ev)
		}
		n := len(updates)
		var err error
		if updates, err = r.engine.Plan(ev, updates); err != nil {
			updates = updates[:n] // nothing of a bad change is applied
			r.metrics.Errors.WithLabelValues("data").Inc()
			var de *transform.DataError
			if r.opts.DeadLetterSet == "" || !errors.As(err, &de) {
				return fmt.Errorf("%w: %w", ErrFatal, err)
			}
			deadLetters = append(deadLetters, r.deadLetter(ev, de))
		}
	}
	for t, n := range reads {
		r.metrics.ChangesRead.WithLabelValues(t).Add(float64(n))
	}
	if next.same(&r.cp) && len(deadLetters) == 0 {
		return nil
	}
	if !lastCommit.IsZero() {
		next.LastCommit = lastCommit
		r.metrics.ReceivedLSN.Set(float64(next.Pos.LSN))
		r.setStatus(func(s *Status) {
			if s.LastCommit = lastCommit; len(next.Streams) == 0 {
				s.Received = next.Pos.String() // a multi-stream source's progress is per stream
			}
		})
	}
	if len(updates) == 0 && len(deadLetters) == 0 && next.Pos == r.cp.Pos && next.Changes == r.cp.Changes &&
		next.Marker == r.cp.Marker && time.Since(r.lastCkp) < r.opts.IdleCheckpoint {
		r.ahead = next // idle progress only: written within IdleCheckpoint
		return nil
	}

	if len(archived) > 0 {
		// Durable in the archive before the store: the archive then holds
		// every change the store does (and, after a crash, some that the
		// source sends again, which a replay reads once).
		if err := r.opts.Archive.Append(archived); err != nil {
			return fmt.Errorf("%w: %w", ErrFatal, err)
		}
	}
	for attempt := 0; ; attempt++ {
		res, err := r.write(ctx, updates, deadLetters, next)
		if err == nil {
			r.done(start, len(batch), updates, next, lastCommit, commits, reads, res)
			return nil
		}
		if !Retryable(err) || ctx.Err() != nil {
			return err
		}
		if errors.Is(err, sink.ErrConflict) && attempt >= 5 {
			return fmt.Errorf("%w: %w: %w", ErrFatal, ErrAnotherWriter, err)
		}
		kind := "sink"
		if errors.Is(err, sink.ErrConflict) {
			kind = "conflict"
		}
		r.noteError(kind, err)
		r.log.Warn("sink write failed; retrying the batch", "err", err, "attempt", attempt+1)
		if !Sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// write applies updates to the records they touch and writes them, then
// writes the checkpoint. On any failure the touched records leave the
// cache, so a retry starts again from what the store holds.
func (r *Runtime) write(ctx context.Context, updates []transform.Update, deadLetters []sink.Record, next Checkpoint) (*outcome, error) {
	entries, err := r.load(ctx, updates)
	if err != nil {
		return nil, err
	}
	res := &outcome{stats: map[string]transform.Stats{}, records: map[string]int64{}}
	dirty, recs, err := r.applyAll(updates, entries, res)
	if err != nil {
		r.dropAll(entries)
		return nil, err
	}
	recs = slices.Grow(recs, len(deadLetters)+1)
	// Dead letters are keyed by position, so a replay rewrites the same
	// records: they expect nothing (Gen 0) only the first time.
	dl, err := r.freshDeadLetters(ctx, deadLetters)
	if err != nil {
		r.dropAll(entries)
		return nil, err
	}
	recs = append(recs, dl...)
	res.deadLetters = len(dl)
	next.DeadLetters = r.cp.DeadLetters + int64(len(dl))
	if len(updates) > 0 {
		next.Groups = maps.Clone(r.cp.Groups)
		if next.Groups == nil {
			next.Groups = map[string]GroupStatus{}
		}
		for i := range updates {
			u := &updates[i]
			gs := next.Groups[u.Group.Name]
			gs.Changes++
			if at := time.UnixMicro(u.Commit).UTC(); u.Commit != 0 && at.After(gs.LastCommit) {
				gs.LastCommit = at
			}
			next.Groups[u.Group.Name] = gs
		}
		for g, n := range res.records {
			gs := next.Groups[g]
			gs.Records += n
			gs.Unmatched += int64(res.stats[g].Unmatched)
			next.Groups[g] = gs
		}
	}
	// A store that writes a Put whole or not at all takes the checkpoint in
	// the same Put: one durable write per batch instead of two.
	atomic := false
	if a, ok := r.store.(interface{ Atomic() bool }); ok && a.Atomic() {
		atomic = true
		recs = append(recs, r.checkpointRecord(&next))
	}
	if len(recs) > 0 {
		if err := r.store.Put(ctx, recs); err != nil {
			r.dropAll(entries)
			if atomic {
				if lost := r.recoverCheckpointGen(ctx, err); lost != nil {
					return nil, lost
				}
			}
			var tb *sink.TooBigError
			if errors.As(err, &tb) {
				return nil, fmt.Errorf("%w: %w", ErrFatal, r.tooBig(tb, err))
			}
			return nil, fmt.Errorf("write %d records: %w", len(recs), err)
		}
		for i, e := range dirty {
			e.gen = recs[i].Gen
			r.cache.put(e) // its size changed
		}
	}
	if atomic {
		r.checkpointWritten(next, recs[len(recs)-1].Gen)
		return res, nil
	}
	if err := r.saveCheckpoint(ctx, next); err != nil {
		return nil, err
	}
	return res, nil
}

// applyAll applies updates to the entries and renders the records they
// changed, on up to GOMAXPROCS workers: the updates are split by record,
// so each record's updates stay in order on one worker. dirty[i] is the
// entry recs[i] renders.
func (r *Runtime) applyAll(updates []transform.Update, entries map[sink.Key]*entry, res *outcome) (dirty []*entry, recs []sink.Record, err error) {
	workers := min(r.workers(), max(1, len(updates)/minUpdatesPerWorker))
	if workers <= 1 {
		w := r.applyPart(updates, entries, nil, 0, 1)
		mergeOutcome(res, w)
		return w.dirty, w.recs, w.err
	}
	// Each worker takes the updates of the records whose key hashes to it.
	owner := make([]uint8, len(updates))
	seed := maphash.MakeSeed()
	for i := range updates {
		k := &updates[i].Key
		owner[i] = uint8(maphash.String(seed, k.Set+"\x00"+k.ID) % uint64(workers))
	}
	parts := make([]*applyResult, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[w] = r.applyPart(updates, entries, owner, uint8(w), workers)
		}()
	}
	wg.Wait()
	for _, p := range parts {
		if p.err != nil && err == nil {
			err = p.err
		}
		mergeOutcome(res, p)
		dirty = append(dirty, p.dirty...)
		recs = append(recs, p.recs...)
	}
	return dirty, recs, err
}

// workers is how many goroutines apply a batch (Options.ApplyWorkers).
func (r *Runtime) workers() int {
	if r.opts.ApplyWorkers > 0 {
		return min(r.opts.ApplyWorkers, 255)
	}
	return min(runtime.GOMAXPROCS(0), maxApplyWorkers)
}

const (
	maxApplyWorkers = 8 // by default
	// minUpdatesPerWorker keeps small batches on one goroutine, where
	// starting workers would cost more than it saves; minRecordsPerWorker
	// is the same for decoding the records read.
	minUpdatesPerWorker = 256
	minRecordsPerWorker = 64
)

// applyResult is what one worker of applyAll did.
type applyResult struct {
	dirty   []*entry
	recs    []sink.Record
	stats   map[string]transform.Stats
	records map[string]int64
	err     error
}

// applyPart applies the updates owner gives to worker w (all of them when
// owner is nil) and renders the records they changed.
func (r *Runtime) applyPart(updates []transform.Update, entries map[sink.Key]*entry, owner []uint8, w uint8, workers int) *applyResult {
	res := &applyResult{stats: map[string]transform.Stats{}, records: map[string]int64{}}
	// Each record's position in each stream before this batch: updates at
	// or before it are in the record already.
	type keyStream struct {
		key    sink.Key
		stream string
	}
	loaded := make(map[keyStream]change.Position, len(entries)/workers)
	isDirty := make(map[*entry]bool, len(entries)/workers)
	for i := range updates {
		if owner != nil && owner[i] != w {
			continue
		}
		u := &updates[i]
		e := entries[u.Key]
		ks := keyStream{u.Key, u.Stream}
		before, ok := loaded[ks]
		if !ok {
			before = e.state.PosIn(u.Stream)
			loaded[ks] = before
		}
		if !before.Less(u.Pos) {
			continue // already in the stored record: replayed after a crash
		}
		st := res.stats[u.Group.Name]
		if err := u.Group.Apply(e.state, u, &st); err != nil {
			res.err = fmt.Errorf("%w: %w", ErrFatal, err)
			return res
		}
		res.stats[u.Group.Name] = st
		if !isDirty[e] {
			isDirty[e] = true
			res.dirty = append(res.dirty, e)
		}
	}
	res.recs = make([]sink.Record, len(res.dirty))
	for i, e := range res.dirty {
		ttl := r.engine.Group(e.key.Set).TTL
		if e.state.IsEmpty() && (ttl == 0 || ttl > tombstoneTTL) {
			ttl = tombstoneTTL
		}
		res.recs[i] = sink.Record{Key: e.key, Gen: e.gen, TTL: ttl, Bins: e.state.Bins()}
		res.records[e.key.Set]++
	}
	return res
}

func mergeOutcome(res *outcome, p *applyResult) {
	for g, st := range p.stats {
		sum := res.stats[g]
		sum.Unmatched += st.Unmatched
		res.stats[g] = sum
	}
	for g, n := range p.records {
		res.records[g] += n
	}
}

// outcome is what one durable batch did, per feature group.
type outcome struct {
	stats       map[string]transform.Stats
	records     map[string]int64
	deadLetters int
}

// tombstoneTTL is how long a record whose entity has nothing left is kept:
// its position guards against replays long after any restart.
const tombstoneTTL = 7 * 24 * time.Hour

// load returns the entries of every record the updates touch, from the
// cache or the store.
func (r *Runtime) load(ctx context.Context, updates []transform.Update) (map[sink.Key]*entry, error) {
	entries := make(map[sink.Key]*entry)
	var missing []sink.Key
	for i := range updates {
		k := updates[i].Key
		if _, ok := entries[k]; ok {
			continue
		}
		if e := r.cache.get(k); e != nil {
			entries[k] = e
			continue
		}
		entries[k] = nil
		missing = append(missing, k)
	}
	if len(missing) > 0 {
		recs, err := r.store.Get(ctx, missing)
		if err != nil {
			return nil, fmt.Errorf("read %d records: %w", len(missing), err)
		}
		states, err := r.decodeAll(recs)
		if err != nil {
			return nil, err
		}
		for i, rec := range recs {
			e := &entry{key: rec.Key, state: states[i], gen: rec.Gen}
			entries[rec.Key] = e
			r.cache.put(e)
		}
	}
	return entries, nil
}

// decodeAll decodes records read from the store, on the apply workers
// when there are many.
func (r *Runtime) decodeAll(recs []sink.Record) ([]*transform.State, error) {
	states := make([]*transform.State, len(recs))
	errs := make([]error, len(recs))
	decode := func(i int) {
		if states[i], errs[i] = transform.DecodeState(recs[i].Bins); errs[i] != nil {
			errs[i] = fmt.Errorf("%w: record %s cannot be decoded: %w", ErrFatal, recs[i].Key, errs[i])
		}
	}
	workers := min(r.workers(), max(1, len(recs)/minRecordsPerWorker))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(recs); i += workers {
				decode(i)
			}
		}()
	}
	wg.Wait()
	return states, errors.Join(errs...)
}

func (r *Runtime) dropAll(entries map[sink.Key]*entry) {
	for k := range entries {
		r.cache.drop(k)
	}
}

// checkpointRecord stamps cp and renders it as the checkpoint record.
func (r *Runtime) checkpointRecord(cp *Checkpoint) sink.Record {
	cp.Written = time.Now().UTC()
	bins := map[string]any{
		"lsn": int64(cp.Pos.LSN), "ord": int64(cp.Pos.Ordinal), "resume": int64(cp.Resume),
		"changes": cp.Changes, "written": cp.Written.UnixMicro(),
	}
	if cp.Pos.Seq != 0 {
		bins["seq"] = int64(cp.Pos.Seq)
	}
	if cp.Marker != "" {
		bins["marker"] = cp.Marker
	}
	if len(cp.Streams) > 0 {
		bins["streams"] = encodeStreams(cp.Streams)
	}
	if !cp.LastCommit.IsZero() {
		bins["commit"] = cp.LastCommit.UnixMicro()
	}
	if cp.DeadLetters > 0 {
		bins["dead"] = cp.DeadLetters
	}
	if len(cp.Groups) > 0 {
		groups := make(map[any]any, len(cp.Groups))
		for g, gs := range cp.Groups {
			groups[g] = []any{gs.Changes, gs.Records, gs.Unmatched, unixMicro(gs.LastCommit)}
		}
		bins["groups"] = groups
	}
	return sink.Record{Key: checkpointKey(r.name), Gen: r.cpGen, Bins: bins}
}

// encodeStreams renders stream progress as a bin: name → [lsn, seq,
// ordinal, offset].
func encodeStreams(ss map[string]StreamPos) map[any]any {
	m := make(map[any]any, len(ss))
	for name, sp := range ss {
		m[name] = []any{int64(sp.Pos.LSN), int64(sp.Pos.Seq), int64(sp.Pos.Ordinal), sp.Offset}
	}
	return m
}

func decodeStreams(v any) (map[string]StreamPos, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, errors.New("not a map")
	}
	out := make(map[string]StreamPos, len(m))
	for k, e := range m {
		name, _ := k.(string)
		list, _ := e.([]any)
		if name == "" || len(list) != 4 {
			return nil, fmt.Errorf("stream %v: want [lsn, seq, ordinal, offset]", k)
		}
		var n [4]int64
		for i, x := range list {
			if n[i], ok = x.(int64); !ok {
				return nil, fmt.Errorf("stream %s: element %d is not an integer", name, i)
			}
		}
		out[name] = StreamPos{Pos: change.Position{LSN: uint64(n[0]), Seq: uint64(n[1]), Ordinal: uint32(n[2])}, Offset: n[3]}
	}
	return out, nil
}

func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// decodeGroups reads the groups bin: name → [changes, records, unmatched,
// last commit µs].
func decodeGroups(v any) (map[string]GroupStatus, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, errors.New("not a map")
	}
	out := make(map[string]GroupStatus, len(m))
	for k, e := range m {
		name, _ := k.(string)
		list, _ := e.([]any)
		if name == "" || len(list) != 4 {
			return nil, fmt.Errorf("group %v: want [changes, records, unmatched, last commit]", k)
		}
		var n [4]int64
		for i, x := range list {
			if n[i], ok = x.(int64); !ok {
				return nil, fmt.Errorf("group %s: element %d is not an integer", name, i)
			}
		}
		gs := GroupStatus{Changes: n[0], Records: n[1], Unmatched: n[2]}
		if n[3] != 0 {
			gs.LastCommit = time.UnixMicro(n[3]).UTC()
		}
		out[name] = gs
	}
	return out, nil
}

func (r *Runtime) saveCheckpoint(ctx context.Context, cp Checkpoint) error {
	rec := []sink.Record{r.checkpointRecord(&cp)}
	if err := r.store.Put(ctx, rec); err != nil {
		if lost := r.recoverCheckpointGen(ctx, err); lost != nil {
			return lost
		}
		return fmt.Errorf("write checkpoint: %w", err)
	}
	r.checkpointWritten(cp, rec[0].Gen)
	return nil
}

// recoverCheckpointGen follows a checkpoint write that met another
// generation: when an earlier write whose outcome was unknown did land,
// the next write must expect its generation. When the stored checkpoint
// vanished or went back, the store lost what tilefeed made durable (an
// Aerospike restarted without persistence, a restored backup): that is
// fatal, and not a second writer.
func (r *Runtime) recoverCheckpointGen(ctx context.Context, err error) error {
	if !errors.Is(err, sink.ErrConflict) {
		return nil
	}
	cur, gen, ok, rerr := LoadCheckpoint(ctx, r.store, r.name)
	switch {
	case rerr != nil:
		return nil // the retry reads it again
	case !ok && r.cpGen != 0:
		return &CheckpointLostError{Key: checkpointKey(r.name), Had: r.cp}
	case ok && (cur.Pos.Less(r.cp.Pos) || cur.Resume < r.cp.Resume || cur.Changes < r.cp.Changes):
		return &CheckpointLostError{Key: checkpointKey(r.name), Had: r.cp, Now: &cur}
	case ok:
		r.cpGen = gen
	}
	return nil
}

// checkpointWritten records a durable checkpoint.
func (r *Runtime) checkpointWritten(cp Checkpoint, gen uint32) {
	r.cpGen = gen
	r.cp, r.ahead = cp, cp
	r.lastCkp = time.Now()
	// The status shows the checkpoint before the source is told of it, so a
	// reader of the status never sees the slot ahead of it.
	r.setStatus(func(s *Status) { s.setDurable(cp) })
	r.metrics.groupsDurable(cp.Groups)
}

// setDurable shows cp as the durable progress: at every checkpoint, and
// from the stored one at start, so a restart shows it at once.
func (s *Status) setDurable(cp Checkpoint) {
	s.ChangesTotal, s.LastDurable, s.DeadLetters = cp.Changes, cp.Written, cp.DeadLetters
	if !cp.LastCommit.IsZero() {
		s.LastCommit = cp.LastCommit
	}
	for g, gs := range cp.Groups {
		if _, ok := s.Groups[g]; ok { // a group no longer defined is not shown
			s.Groups[g] = gs
		}
	}
	if len(cp.Streams) == 0 {
		s.Durable, s.ResumeLSN = cp.Pos.String(), change.FormatLSN(cp.Resume)
		s.Offsets, s.StreamPositions = nil, nil
		return
	}
	s.Durable, s.ResumeLSN = "", ""
	s.Offsets = make(map[string]int64, len(cp.Streams))
	s.StreamPositions = make(map[string]string, len(cp.Streams))
	for k, v := range cp.Streams {
		s.Offsets[k], s.StreamPositions[k] = v.Offset, v.Pos.String()
	}
}

// streamsText lists at most n streams' next offsets, in name order, for a
// log line ("orders/0@120 orders/1@98 … 12 more").
func streamsText(ss map[string]StreamPos, n int) string {
	names := slices.Sorted(maps.Keys(ss))
	var b strings.Builder
	for i, name := range names {
		if i == n {
			fmt.Fprintf(&b, " … %d more", len(names)-n)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d", name, ss[name].Offset)
	}
	return b.String()
}

// done records a durable batch. The commit→durable histogram takes one
// value per transaction the batch completes (commits); a source without
// commit markers gives one per batch, from its newest commit.
func (r *Runtime) done(start time.Time, n int, updates []transform.Update, cp Checkpoint, lastCommit time.Time, commits []time.Time, reads map[string]int, res *outcome) {
	r.src.Ack(cp)
	now := time.Now()
	m := r.metrics
	m.ApplySeconds.Observe(now.Sub(start).Seconds())
	m.BatchChanges.Observe(float64(n))
	m.DurableLSN.Set(float64(cp.Resume))
	m.CacheEntities.Set(float64(r.cache.len()))
	m.CacheBytes.Set(float64(r.cache.bytes))
	var lag float64
	if !lastCommit.IsZero() {
		lag = now.Sub(lastCommit).Seconds()
		if len(commits) == 0 {
			m.CommitToDurable.Observe(lag)
		}
	}
	for _, c := range commits {
		m.CommitToDurable.Observe(now.Sub(c).Seconds())
	}
	for t, n := range reads {
		m.ChangesApplied.WithLabelValues(t).Add(float64(n))
	}
	for g, st := range res.stats {
		if st.Unmatched > 0 {
			m.Unmatched.WithLabelValues(g).Add(float64(st.Unmatched))
		}
	}
	for g, n := range res.records {
		m.RecordsWritten.WithLabelValues(g).Add(float64(n))
	}
	m.DeadLetters.Add(float64(res.deadLetters))
	r.setStatus(func(s *Status) { // the counts came with the checkpoint (setDurable)
		s.State, s.SinkOK, s.LastError = "running", true, ""
		if lag > 0 {
			s.LagSeconds = lag
		}
	})
}

func (r *Runtime) noteError(kind string, err error) {
	r.metrics.Errors.WithLabelValues(kind).Inc()
	r.setStatus(func(s *Status) {
		s.State, s.LastError = "retrying", err.Error()
		if kind == "sink" || kind == "conflict" {
			s.SinkOK = false
		}
	})
}

// deadLetter turns a change a group cannot use into a dead-letter record:
// where it came from, why it was refused, and the row images.
func (r *Runtime) deadLetter(ev *change.Event, de *transform.DataError) sink.Record {
	if r.opts.LogDeadLetters {
		r.log.Warn("change dead-lettered", "table", ev.Table, "position", ev.Pos.String(), "group", de.Group,
			"column", de.Column, "reason", de.Reason)
	}
	return sink.Record{
		Key: sink.Key{Set: r.opts.DeadLetterSet, ID: r.name + "/" + ev.Pos.String()},
		Bins: map[string]any{
			"connector": r.name, "table": ev.Table, "op": ev.Op.String(), "lsn": int64(ev.Pos.LSN),
			"ord": int64(ev.Pos.Ordinal), "group": de.Group, "column": de.Column, "reason": de.Reason,
			"error": de.Error(), "before": rowJSON(ev.Before), "after": rowJSON(ev.After),
			"commit_ts": ev.CommitTime.UnixMicro(),
		},
	}
}

// invalidLetter turns a record the source could not decode into a
// dead-letter record, keyed by where it came from.
func (r *Runtime) invalidLetter(ev *change.Event) sink.Record {
	if r.opts.LogDeadLetters {
		r.log.Warn("record dead-lettered", "origin", ev.Origin, "reason", ev.Err.Error())
	}
	return sink.Record{
		Key: sink.Key{Set: r.opts.DeadLetterSet, ID: r.name + "/" + ev.Origin},
		Bins: map[string]any{
			"connector": r.name, "origin": ev.Origin, "op": ev.Op.String(), "reason": "undecodable",
			"error": ev.Err.Error(), "raw": ev.Raw,
		},
	}
}

// freshDeadLetters drops dead letters already stored (a replay).
func (r *Runtime) freshDeadLetters(ctx context.Context, recs []sink.Record) ([]sink.Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	keys := make([]sink.Key, len(recs))
	for i := range recs {
		keys[i] = recs[i].Key
	}
	have, err := r.store.Get(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := recs[:0:0]
	for i, h := range have {
		if h.Gen == 0 {
			out = append(out, recs[i])
		}
	}
	return out, nil
}

func rowJSON(row change.Row) string {
	if row == nil {
		return ""
	}
	m := make(map[string]any, len(row))
	for k, v := range row {
		m[k] = transform.JSONValue(v)
		if v == change.Unchanged {
			m[k] = "__unchanged_toast"
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%v", row)
	}
	return string(b)
}

// Ready reports why the runtime cannot serve fresh features, or nil.
func (r *Runtime) Ready() error {
	s := r.Status()
	switch {
	case s.State == "failed":
		return fmt.Errorf("stopped: %s", s.LastError)
	case !s.SinkOK:
		return fmt.Errorf("sink: %s", s.LastError)
	}
	return nil
}

// tooBig explains a record the store refused for its size. Records over
// record.split.bytes are split into a head and parts (sink/split), so this
// means the store's record limit is below what the split makes: its head
// (a big projected row) or a part. Skipping the changes would make the
// entity's features silently wrong, so this stops tilefeed whatever
// errors.tolerance says. The aggregates whose state grows with the rows (a
// multiset of values, or of rows for first and last) are named, lifetime
// ones apart: they grow without bound.
func (r *Runtime) tooBig(tb *sink.TooBigError, err error) error {
	k := tb.Keys[0]
	g := r.engine.Group(k.Set)
	if g == nil {
		return fmt.Errorf("record %s is too big for the store: %w", k, err)
	}
	var lifetime, windowed []string
	for _, a := range g.Aggs {
		switch a.Function {
		case "min", "max", "distinct", "days_since_last", "first", "last":
			if a.Window == 0 {
				lifetime = append(lifetime, a.Name)
			} else {
				windowed = append(windowed, a.Name)
			}
		}
	}
	var growth string
	switch {
	case len(lifetime) > 0:
		growth = fmt.Sprintf(" (its state grows with the entity's history through the lifetime aggregates %s: a window bounds them)", strings.Join(lifetime, ", "))
	case len(windowed) > 0:
		growth = fmt.Sprintf(" (its state grows with the rows in the windows of %s)", strings.Join(windowed, ", "))
	}
	return fmt.Errorf("feature group %q, entity %q: %w%s; a record over record.split.bytes is stored as a head and parts of at most 256 KiB, and the store's record limit (Aerospike: the namespace's max-record-size; embedded store: embedded.max.record.bytes) must hold both: lower record.split.bytes, or raise the limit",
		g.Name, k.ID, err, growth)
}

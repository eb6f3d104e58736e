package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// Options tune a Source.
type Options struct {
	// StatusInterval is how often a standby status update goes to the
	// server when nothing else prompts one (Debezium: 10s).
	StatusInterval time.Duration
	// LagInterval is how often the slot's lag is measured; 0 turns it off.
	LagInterval time.Duration
	// HeartbeatInterval is how often the heartbeat action query runs.
	HeartbeatInterval time.Duration
	// AfterStatus, when set, is called after each standby status update
	// reaches the server (a fault-injection hook for the crash suite).
	AfterStatus func()
	// Store and Connector are where the snapshot keeps its progress (the
	// sink, under the connector's name), so that an interrupted snapshot
	// resumes. Without a Store a snapshot cannot resume, and
	// snapshot.mode always and when_needed cannot rebuild.
	Store     connector.Store
	Connector string
	// Progress, when set, receives a progress bar of the snapshot (a
	// terminal).
	Progress io.Writer
}

// Source streams one replication slot.
type Source struct {
	cfg     config.Postgres
	opts    Options
	log     *slog.Logger
	metrics *connector.Metrics

	acked     atomic.Uint64 // durable: the only position ever sent as flushed
	ackedPos  atomic.Pointer[change.Position]
	connected atomic.Bool

	// tables are the feature tables and engine their groups, set by Setup.
	tables []string
	engine *transform.Engine
	// snapshotPending is set by Setup when a snapshot must be taken:
	// fresh (snapProg nil: the slot is created with an exported snapshot)
	// or resumed from snapProg.
	snapshotPending bool
	snapProg        *progress
	// filterProg, when set, is a finished snapshot whose later reads the
	// stream must still filter (see snapFilter).
	filterProg *progress
	// finished: snapshot.mode=initial_only and the snapshot is done.
	finished bool
	// types resolves domains to their base types for every path.
	types *baseTypes
}

// New returns a source for cfg. Call Setup before Stream.
func New(cfg config.Postgres, opts Options, log *slog.Logger, m *connector.Metrics) *Source {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = config.DefaultStatusInterval
	}
	return &Source{cfg: cfg, opts: opts, log: log, metrics: m, types: newBaseTypes(cfg.ConnString())}
}

// Ack records that everything up to cp.Resume is durable in the sink.
func (s *Source) Ack(cp connector.Checkpoint) {
	pos := cp.Pos
	s.ackedPos.Store(&pos)
	resume := cp.Resume
	for {
		cur := s.acked.Load()
		if resume <= cur || s.acked.CompareAndSwap(cur, resume) {
			return
		}
	}
}

// Connected reports whether the replication connection is up.
func (s *Source) Connected() bool { return s.connected.Load() }

func (s *Source) replicationConn(ctx context.Context) (*pgconn.PgConn, error) {
	conn, err := pgconn.Connect(ctx, s.cfg.ConnString()+" replication='database'")
	if err != nil {
		return nil, fmt.Errorf("open replication connection to %s:%d database %s as %s: %w", s.cfg.Host, s.cfg.Port, s.cfg.DBName, s.cfg.User, err)
	}
	return conn, nil
}

func (s *Source) createSlot(ctx context.Context) error {
	conn, err := s.replicationConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	point, _, err := createSlot(ctx, conn, s.cfg.SlotName, false, false)
	if err != nil {
		return err
	}
	s.log.Info("created replication slot", "slot", s.cfg.SlotName, "consistent_point", change.FormatLSN(point))
	return nil
}

// createSlot creates a pgoutput slot on a replication connection and
// returns its consistent point and, with export, the name of the snapshot
// that shows the database as of that point (valid while conn is idle).
// A temporary slot goes when its connection closes.
func createSlot(ctx context.Context, conn *pgconn.PgConn, name string, temporary, export bool) (point uint64, snapshot string, err error) {
	action := "NOEXPORT_SNAPSHOT"
	if export {
		action = "EXPORT_SNAPSHOT"
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, Temporary: temporary, SnapshotAction: action})
	if err != nil {
		return 0, "", fmt.Errorf("create replication slot %q: %w", name, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, "", fmt.Errorf("replication slot %q: consistent point %q: %w", name, res.ConsistentPoint, err)
	}
	return uint64(lsn), res.SnapshotName, nil
}

func parseLSN(s string) (uint64, error) {
	lsn, err := pglogrepl.ParseLSN(s)
	return uint64(lsn), err
}

// Stream implements connector.Source: it reconnects with back-off until
// ctx ends or a fatal error (slot lost, protocol violation) stops it.
func (s *Source) Stream(ctx context.Context, from connector.Checkpoint, out chan<- change.Event) error {
	resume := from.Resume
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.opts.LagInterval > 0 {
		lagCtx, stop := context.WithCancel(ctx)
		defer stop()
		wg.Add(1)
		go func() { defer wg.Done(); s.watchLag(lagCtx) }()
	}
	if s.cfg.HeartbeatActionQuery != "" && s.opts.HeartbeatInterval > 0 {
		hbCtx, stop := context.WithCancel(ctx)
		defer stop()
		wg.Add(1)
		go func() { defer wg.Done(); s.heartbeatAction(hbCtx) }()
	}
	if s.finished {
		return ErrSnapshotDone
	}
	st := &stream{Source: s, out: out, from: resume, fromPos: from.Pos, snapshotPending: s.snapshotPending}
	if s.filterProg != nil {
		f, err := newSnapFilter(s.filterProg)
		if err != nil {
			return err
		}
		st.filter = f
	}
	for attempt := 0; ; attempt++ {
		err := st.run(ctx)
		s.connected.Store(false)
		s.metrics.SourceConnected.Set(0)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errStopAfterSnapshot) {
			return s.dropSlotAfterSnapshot(ctx)
		}
		if errors.Is(err, decode.ErrProtocol) || errors.Is(err, ErrSlotLost) || errors.Is(err, connector.ErrFatal) {
			return err
		}
		if st.progressed {
			attempt = 0
		}
		wait := connector.Reconnect(attempt)
		s.metrics.Errors.WithLabelValues("source").Inc()
		s.log.Warn("replication stream broke; reconnecting", "err", err, "in", wait)
		if !connector.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// stream is one replication session and what survives reconnects.
type stream struct {
	*Source
	out        chan<- change.Event
	from       uint64 // where the next session starts: end of the last whole transaction received
	progressed bool
	fromPos    change.Position // the checkpoint's position when Stream began
	// snapshotPending: this session takes (or resumes) the snapshot
	// before it streams.
	snapshotPending bool
	// filter drops what a resumed snapshot's later reads hold already,
	// until the stream passes their consistent point.
	filter *snapFilter
	// stopAt, under snapshot.mode=initial_only: stop once this is durable.
	stopAt uint64
}

func (st *stream) run(ctx context.Context) error {
	st.progressed = false
	conn, err := st.replicationConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if st.snapshotPending {
		// A failure from here on is fatal: the restart resumes the
		// snapshot from what the sink holds.
		sn := &snapshot{st: st, prog: st.snapProg, store: st.opts.Store, name: st.opts.Connector}
		if err := sn.run(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: snapshot: %w", connector.ErrFatal, err)
		}
		st.snapshotPending = false
		st.from = sn.prog.Slot
		f, err := newSnapFilter(sn.prog)
		if err != nil {
			return err
		}
		st.filter = f
		if st.cfg.SnapshotMode == "initial_only" {
			st.stopAt = sn.prog.maxPoint()
		}
	}
	if st.cfg.SnapshotMode == "initial_only" && st.stopAt == 0 {
		st.stopAt = 1 // a restart after the snapshot: stop once the filter is done
		if st.filter != nil {
			st.stopAt = st.filter.max
		}
	}
	if st.stopAt != 0 && st.acked.Load() >= st.stopAt {
		if err := st.filterDone(ctx); err != nil {
			return err
		}
		return errStopAfterSnapshot
	}
	if err := st.checkSlot(ctx); err != nil {
		return err
	}
	args := []string{"proto_version '1'", "publication_names '" + st.cfg.PublicationName + "'"}
	if err := pglogrepl.StartReplication(ctx, conn, st.cfg.SlotName, pglogrepl.LSN(st.from),
		pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return fmt.Errorf("start replication on slot %q at %s: %w", st.cfg.SlotName, change.FormatLSN(st.from), err)
	}
	st.connected.Store(true)
	st.metrics.SourceConnected.Set(1)
	st.log.Info("streaming", "slot", st.cfg.SlotName, "from", change.FormatLSN(st.from))

	dec := decode.NewPgOutput(func(table, column string) bool { return st.cfg.CapturesColumn(table + "." + column) })
	dec.ResolveTypes(st.types.resolve)
	var (
		events   []change.Event
		inTx     bool
		received uint64
		lastSent uint64 // last heartbeat resume sent
	)
	ticker := time.NewTicker(st.opts.StatusInterval)
	defer ticker.Stop()
	// On the way out, tell the server what is durable now: the runtime
	// acknowledges its last batch before it stops the source.
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = st.sendStatus(fctx, conn, false)
	}()
	for {
		// Status goes out every StatusInterval whether the stream is busy
		// or idle, so the slot advances as the runtime makes data durable.
		select {
		case <-ticker.C:
			// Outside a transaction, ask for a keepalive back: it carries
			// the server's position, which becomes a heartbeat, so the
			// slot advances while the captured tables are idle.
			if err := st.sendStatus(ctx, conn, !inTx); err != nil {
				return err
			}
			if err := st.filterDone(ctx); err != nil {
				return err
			}
			if st.stopAt != 0 && st.acked.Load() >= st.stopAt {
				return errStopAfterSnapshot
			}
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, st.opts.StatusInterval)
		raw, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue // the ticker has fired by now
			}
			return fmt.Errorf("receive from slot %q: %w", st.cfg.SlotName, err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication on slot %q: %w", st.cfg.SlotName, pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return fmt.Errorf("server ended replication on slot %q", st.cfg.SlotName)
		case *pgproto3.CopyData:
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("%w: keepalive: %w", decode.ErrProtocol, err)
				}
				if ka.ReplyRequested {
					if err := st.sendStatus(ctx, conn, false); err != nil {
						return err
					}
				}
				// Idle: everything up to the server's position has been
				// sent, so it may become the resume position once the
				// runtime has made everything before it durable.
				if end := uint64(ka.ServerWALEnd); !inTx && end > lastSent && end > received {
					select {
					case st.out <- change.Event{Op: change.Heartbeat, Resume: end}:
						lastSent = end
					default: // the queue is full: data will carry progress
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("%w: XLogData: %w", decode.ErrProtocol, err)
				}
				events, err = dec.Decode(events[:0], xld.WALData)
				if err != nil {
					return fmt.Errorf("slot %q at %s: %w", st.cfg.SlotName, change.FormatLSN(uint64(xld.WALStart)), err)
				}
				if len(xld.WALData) > 0 && xld.WALData[0] == 'B' {
					inTx = true
				}
				for i := range events {
					ev := events[i]
					if st.filter != nil {
						var keep bool
						if ev, keep = st.filter.apply(ev); !keep {
							continue
						}
					}
					if err := st.send(ctx, conn, ticker, ev); err != nil {
						return err
					}
					if ev.Op == change.Commit {
						inTx = false
						received = ev.Resume
						st.from = received
						st.progressed = true
					}
				}
			}
		}
	}
}

// send hands an event to the runtime, keeping the server informed while
// the queue is full (backpressure must not look like a dead client).
func (st *stream) send(ctx context.Context, conn *pgconn.PgConn, ticker *time.Ticker, ev change.Event) error {
	for {
		select {
		case st.out <- ev:
			return nil
		case <-ticker.C:
			if err := st.sendStatus(ctx, conn, false); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendStatus reports the durable position as written, flushed and
// applied. All three are set explicitly: pglogrepl copies the write
// position into a zero flush position, which would acknowledge changes
// that are not durable.
func (st *stream) sendStatus(ctx context.Context, conn *pgconn.PgConn, reply bool) error {
	durable := pglogrepl.LSN(st.acked.Load())
	err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: durable, WALFlushPosition: durable, WALApplyPosition: durable,
		ClientTime: time.Now(), ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("send status update to slot %q: %w", st.cfg.SlotName, err)
	}
	if st.opts.AfterStatus != nil && durable != 0 {
		st.opts.AfterStatus()
	}
	return nil
}

// checkSlot catches a slot dropped or invalidated while tilefeed ran.
func (st *stream) checkSlot(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, st.cfg.ConnString())
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL at %s:%d: %w", st.cfg.Host, st.cfg.Port, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var walStatus *string
	err = conn.QueryRow(ctx, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", st.cfg.SlotName).Scan(&walStatus)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: slot %q disappeared while tilefeed was streaming from it (durable position %s). Start afresh: remove the connector's records and checkpoint from the sink and restart",
			ErrSlotLost, st.cfg.SlotName, change.FormatLSN(st.acked.Load()))
	case err != nil:
		return fmt.Errorf("read replication slot %q: %w", st.cfg.SlotName, err)
	case walStatus != nil && *walStatus == "lost":
		return fmt.Errorf("%w: slot %q was invalidated (wal_status lost)", ErrSlotLost, st.cfg.SlotName)
	}
	return nil
}

// every runs fn on a connection of its own every interval until ctx ends;
// a failed fn drops the connection, which the next tick opens again.
func (s *Source) every(ctx context.Context, interval time.Duration, fn func(*pgx.Conn) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil {
			c, err := pgx.Connect(ctx, s.cfg.ConnString())
			if err != nil {
				continue
			}
			conn = c
		}
		if err := fn(conn); err != nil {
			conn.Close(ctx)
			conn = nil
		}
	}
}

// watchLag measures how much WAL the slot holds back.
func (s *Source) watchLag(ctx context.Context) {
	s.every(ctx, s.opts.LagInterval, func(conn *pgx.Conn) error {
		var lag *int64
		err := conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint
			FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.SlotName).Scan(&lag)
		if err == nil && lag != nil {
			s.metrics.SlotLagBytes.Set(float64(*lag))
		}
		return err
	})
}

// heartbeatAction runs heartbeat.action.query every heartbeat interval, so
// a database whose captured tables are idle still produces changes.
func (s *Source) heartbeatAction(ctx context.Context) {
	s.every(ctx, s.opts.HeartbeatInterval, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, s.cfg.HeartbeatActionQuery)
		if err != nil && ctx.Err() == nil {
			s.metrics.Errors.WithLabelValues("heartbeat").Inc()
			s.log.Warn("heartbeat.action.query failed", "err", err)
		}
		return err
	})
}

// errStopAfterSnapshot ends a session under snapshot.mode=initial_only.
var errStopAfterSnapshot = errors.New("the snapshot is durable")

// filterDone drops the snapshot filter, and the progress record that
// describes it, once the checkpoint is past the last consistent point.
func (st *stream) filterDone(ctx context.Context) error {
	if st.filter == nil || st.acked.Load() < st.filter.max {
		return nil
	}
	st.filter = nil
	if st.opts.Store == nil {
		return nil
	}
	if err := expireRecords(ctx, st.opts.Store, []sink.Key{progressKey(st.opts.Connector)}); err != nil {
		return fmt.Errorf("drop the snapshot progress record: %w", err)
	}
	st.log.Info("the stream passed the snapshot's last read point", "point", change.FormatLSN(st.acked.Load()))
	return nil
}

// dropSlotAfterSnapshot ends snapshot.mode=initial_only: the slot would
// otherwise hold WAL for a stream nobody reads.
func (s *Source) dropSlotAfterSnapshot(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.cfg.ConnString())
	if err != nil {
		return fmt.Errorf("connect to drop slot %q: %w", s.cfg.SlotName, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The walsender of the closed session may take a moment to let go.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", s.cfg.SlotName)
		if err == nil || attempt == 50 || !connector.Sleep(ctx, 100*time.Millisecond) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("snapshot.mode=initial_only: the snapshot is durable, but dropping slot %q failed: %w", s.cfg.SlotName, err)
	}
	s.log.Info("snapshot.mode=initial_only: snapshot durable, slot dropped; stopping", "slot", s.cfg.SlotName)
	return ErrSnapshotDone
}

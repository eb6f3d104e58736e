package postgres

import (
	"context"
	"errors"
	"fmt"
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
}

// Source streams one replication slot.
type Source struct {
	cfg     config.Postgres
	opts    Options
	log     *slog.Logger
	metrics *connector.Metrics

	acked     atomic.Uint64 // durable: the only position ever sent as flushed
	connected atomic.Bool

	// tables are the feature tables and engine their groups, set by Setup.
	tables []string
	engine *transform.Engine
	// snapshotPending is set by Setup when the slot must be created with an
	// exported snapshot and the tables read in it (snapshot.mode=initial).
	snapshotPending bool
}

// New returns a source for cfg. Call Setup before Stream.
func New(cfg config.Postgres, opts Options, log *slog.Logger, m *connector.Metrics) *Source {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = config.DefaultStatusInterval
	}
	return &Source{cfg: cfg, opts: opts, log: log, metrics: m}
}

// Ack records that everything up to cp.Resume is durable in the sink.
func (s *Source) Ack(cp connector.Checkpoint) {
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
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, s.cfg.SlotName, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		return fmt.Errorf("create replication slot %q: %w", s.cfg.SlotName, err)
	}
	s.log.Info("created replication slot", "slot", s.cfg.SlotName, "consistent_point", res.ConsistentPoint)
	return nil
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
	st := &stream{Source: s, out: out, from: resume, snapshotPending: s.snapshotPending}
	for attempt := 0; ; attempt++ {
		err := st.run(ctx)
		s.connected.Store(false)
		s.metrics.SourceConnected.Set(0)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, decode.ErrProtocol) || errors.Is(err, ErrSlotLost) || errors.Is(err, connector.ErrFatal) {
			return err
		}
		if st.progressed {
			attempt = 0
		}
		wait := min(200*time.Millisecond<<min(attempt, 6), 10*time.Second)
		s.metrics.Errors.WithLabelValues("source").Inc()
		s.log.Warn("replication stream broke; reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stream is one replication session and what survives reconnects.
type stream struct {
	*Source
	out        chan<- change.Event
	from       uint64 // where the next session starts: end of the last whole transaction received
	progressed bool
	// snapshotPending: this session creates the slot and reads the
	// initial snapshot before it streams.
	snapshotPending bool
}

func (st *stream) run(ctx context.Context) error {
	st.progressed = false
	conn, err := st.replicationConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if st.snapshotPending {
		// A failure from here on is fatal: part of the snapshot may be in
		// the runtime already, and the exported snapshot dies with this
		// connection.
		if err := st.initialSnapshot(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: initial snapshot: %w", connector.ErrFatal, err)
		}
		st.snapshotPending = false
	}
	if err := st.checkSlot(ctx, conn); err != nil {
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
					if err := st.send(ctx, conn, ticker, events[i]); err != nil {
						return err
					}
					if events[i].Op == change.Commit {
						inTx = false
						received = events[i].Resume
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
func (st *stream) checkSlot(ctx context.Context, _ *pgconn.PgConn) error {
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

package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/decode"
)

// initialSnapshot creates the slot with an exported snapshot and sends
// every row of the feature tables as it was at the slot's consistent
// point, as Read events, then a Commit marker whose Resume is the
// consistent point: streaming continues exactly where the snapshot ends,
// so no change is missed or counted twice at the handover.
//
// Snapshot rows take positions (consistent point − 1, n): after
// everything (the sink holds nothing yet) and before every streamed
// transaction, whose commits come at or after the consistent point.
func (st *stream) initialSnapshot(ctx context.Context, repl *pgconn.PgConn) error {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, st.cfg.SlotName, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return fmt.Errorf("create replication slot %q with an exported snapshot: %w", st.cfg.SlotName, err)
	}
	cp, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("slot %q consistent point %q: %w", st.cfg.SlotName, res.ConsistentPoint, err)
	}
	st.log.Info("created replication slot; taking the initial snapshot", "slot", st.cfg.SlotName,
		"consistent_point", res.ConsistentPoint, "snapshot", res.SnapshotName, "tables", st.tables)

	conn, err := pgx.Connect(ctx, st.cfg.ConnString())
	if err != nil {
		return fmt.Errorf("connect for the snapshot: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(res.SnapshotName, "'", "''")+"'"); err != nil {
		return fmt.Errorf("set transaction snapshot %s: %w", res.SnapshotName, err)
	}
	var at time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		return err
	}
	at = at.UTC()
	lsn := uint64(cp) - 1
	var n uint32
	started := time.Now()
	for _, table := range st.tables {
		rows, err := st.snapshotTable(ctx, tx, table, lsn, at, &n)
		if err != nil {
			return fmt.Errorf("snapshot of %s: %w", table, err)
		}
		st.log.Info("snapshot: table done", "table", table, "rows", rows, "total_rows", n,
			"rows_per_s", int(float64(n)/time.Since(started).Seconds()))
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	n++
	if err := st.sendSnapshot(ctx, change.Event{Op: change.Commit, Pos: change.Position{LSN: lsn, Ordinal: n}, CommitTime: at, Resume: uint64(cp)}); err != nil {
		return err
	}
	st.from = uint64(cp)
	st.log.Info("snapshot complete; streaming from the consistent point", "rows", n-1,
		"seconds", time.Since(started).Seconds(), "consistent_point", res.ConsistentPoint)
	return nil
}

func (st *stream) snapshotTable(ctx context.Context, tx pgx.Tx, table string, lsn uint64, at time.Time, n *uint32) (int64, error) {
	var estimate float64
	_ = tx.QueryRow(ctx, "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", table).Scan(&estimate)
	st.log.Info("snapshot: reading table", "table", table, "estimated_rows", int64(max(estimate, 0)))
	// Window backfill: when every group on the table only has windowed
	// aggregates, rows older than the longest window are not read.
	query, args := "SELECT * FROM "+quoteTable(table), []any{}
	if col, from, ok := st.backfillFrom(table, at); ok {
		query += " WHERE " + pgx.Identifier{col}.Sanitize() + " >= $1"
		args = append(args, from)
		st.log.Info("snapshot: window backfill", "table", table, "column", col, "from", from)
	}
	// Text format, decoded as the stream's values are, so the snapshot and
	// the stream agree to the byte.
	rows, err := tx.Query(ctx, query, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	types := pgtype.NewMap()
	var count int64
	last := time.Now()
	for rows.Next() {
		raw := rows.RawValues()
		row := make(change.Row, len(fields))
		for i, f := range fields {
			if !st.cfg.CapturesColumn(table + "." + f.Name) {
				continue
			}
			if raw[i] == nil {
				row[f.Name] = nil
				continue
			}
			v, err := decode.DecodeText(types, f.DataTypeOID, raw[i])
			if err != nil {
				return count, fmt.Errorf("column %s: %w", f.Name, err)
			}
			row[f.Name] = v
		}
		if *n == math.MaxUint32-1 {
			return count, fmt.Errorf("more than %d rows: too many for one snapshot", math.MaxUint32-1)
		}
		*n++
		count++
		st.metrics.SnapshotRows.WithLabelValues(table).Inc()
		if err := st.sendSnapshot(ctx, change.Event{Op: change.Read, Table: table, After: row,
			Pos: change.Position{LSN: lsn, Ordinal: *n}, CommitTime: at}); err != nil {
			return count, err
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			st.log.Info("snapshot: progress", "table", table, "rows", count, "estimated_rows", int64(max(estimate, 0)))
		}
	}
	return count, rows.Err()
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

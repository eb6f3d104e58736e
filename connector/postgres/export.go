package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/decode"
)

// TableReader reads feature tables in one REPEATABLE READ, READ ONLY
// transaction: every table as of one snapshot. No replication slot is
// touched.
type TableReader struct {
	conn  *pgx.Conn
	tx    pgx.Tx
	types *baseTypes
}

// OpenTableReader connects and begins the transaction.
func OpenTableReader(ctx context.Context, cfg config.Postgres) (*TableReader, error) {
	conn, err := pgx.Connect(ctx, cfg.ConnString())
	if err != nil {
		return nil, fmt.Errorf("connect to read the feature tables: %w", err)
	}
	types := newBaseTypes(cfg.ConnString())
	if err := types.load(ctx, conn); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return &TableReader{conn: conn, tx: tx, types: types}, nil
}

// Close ends the transaction and the connection.
func (r *TableReader) Close() {
	_ = r.tx.Rollback(context.Background())
	r.conn.Close(context.Background())
}

// Read reads the rows of table whose timeCol is at or after from (every
// row when from is zero), ordered by the columns of order, then timeCol,
// decoded as the snapshot decodes them, and hands each to fn. Rows whose
// timeCol is NULL are left out: without an event time no tile takes them.
func (r *TableReader) Read(ctx context.Context, table string, order []string, timeCol string, from time.Time, fn func(change.Row) error) error {
	tc := pgx.Identifier{timeCol}.Sanitize()
	by := make([]string, 0, len(order)+1)
	for _, col := range order {
		by = append(by, pgx.Identifier{col}.Sanitize())
	}
	by = append(by, tc)
	query := "SELECT * FROM " + quoteTable(table) + " WHERE " + tc + " IS NOT NULL"
	args := []any{pgx.QueryExecModeSimpleProtocol}
	if !from.IsZero() {
		query += " AND " + tc + " >= $1"
		args = append(args, from)
	}
	rows, err := r.tx.Query(ctx, query+" ORDER BY "+strings.Join(by, ", "), args...)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	oids := make([]uint32, len(fields))
	for i, f := range fields {
		if oids[i], _, err = r.types.resolve(f.DataTypeOID, f.TypeModifier); err != nil {
			return err
		}
	}
	for rows.Next() {
		raw := rows.RawValues()
		row := make(change.Row, len(fields))
		for i, f := range fields {
			if raw[i] == nil {
				row[f.Name] = nil
				continue
			}
			v, err := decode.DecodeText(r.conn.TypeMap(), oids[i], raw[i])
			if err != nil {
				return fmt.Errorf("%s column %s: %w", table, f.Name, err)
			}
			row[f.Name] = v
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	return nil
}

// Estimate returns PostgreSQL's estimate of table's rows (pg_class.reltuples,
// as of the last ANALYZE or VACUUM); 0 when it has none.
func (r *TableReader) Estimate(ctx context.Context, table string) int64 {
	var n float64
	if err := r.tx.QueryRow(ctx, "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass", quoteTable(table)).Scan(&n); err != nil || n < 0 {
		return 0
	}
	return int64(n)
}

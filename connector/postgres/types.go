package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// firstUserOID is PostgreSQL's FirstNormalObjectId: a type with a lower
// OID was made by initdb, and every domain among those is loaded at once.
const firstUserOID = 16384

// baseType is the type a column's values are decoded as.
type baseType struct {
	oid uint32
	mod int32
}

// baseTypes resolves domains to their base types, as PostgreSQL's row
// descriptions do for the snapshot's queries, so that the stream decodes
// a domain column exactly as the snapshot does (docs/types.md; Debezium
// resolves domains the same way). An array of a domain resolves to the
// array of its base type. It reads pg_type on the source's normal
// connection when first asked and again only for a user type it has not
// seen (one created after the last read): at RELATION messages, never per
// row. Safe for concurrent use (the snapshot's workers).
type baseTypes struct {
	connString string

	mu     sync.Mutex
	loaded bool
	base   map[uint32]baseType // domains and arrays of domains
	seen   map[uint32]bool     // user types known at the last read
}

func newBaseTypes(connString string) *baseTypes { return &baseTypes{connString: connString} }

// resolve is a decode.TypeResolver.
func (b *baseTypes) resolve(oid uint32, mod int32) (uint32, int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, known := b.base[oid]; !b.loaded || (oid >= firstUserOID && !known && !b.seen[oid]) {
		if err := b.reload(); err != nil {
			return 0, 0, err
		}
		b.seen[oid] = true // not a domain (or now in base): never read again for it
	}
	t, ok := b.base[oid]
	if !ok {
		return oid, mod, nil
	}
	if mod == -1 {
		mod = t.mod
	}
	return t.oid, mod, nil
}

// load reads the domains on conn (Setup's connection), so the first
// RELATION message needs no connection of its own.
func (b *baseTypes) load(ctx context.Context, conn *pgx.Conn) error {
	base, err := readDomains(ctx, conn)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.base, b.seen, b.loaded = base, map[uint32]bool{}, true
	return nil
}

func (b *baseTypes) reload() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.connString)
	if err != nil {
		return fmt.Errorf("connect to read the domain types: %w", err)
	}
	defer conn.Close(ctx)
	base, err := readDomains(ctx, conn)
	if err != nil {
		return err
	}
	b.base, b.loaded = base, true
	if b.seen == nil {
		b.seen = map[uint32]bool{}
	}
	return nil
}

// readDomains maps every domain to its base type (through domains over
// domains: the outermost modifier set wins, as in PostgreSQL's
// getBaseTypeAndTypmod) and every array of a domain to the array of the
// base type.
func readDomains(ctx context.Context, conn *pgx.Conn) (map[uint32]baseType, error) {
	rows, err := conn.Query(ctx, `WITH RECURSIVE d(oid, base, mod) AS (
			SELECT oid, typbasetype, typtypmod FROM pg_type WHERE typtype = 'd'
			UNION ALL
			SELECT d.oid, t.typbasetype, CASE WHEN d.mod <> -1 THEN d.mod ELSE t.typtypmod END
			FROM d JOIN pg_type t ON t.oid = d.base AND t.typtype = 'd')
		SELECT d.oid::int8, d.base::int8, d.mod, dt.typarray::int8, bt.typarray::int8
		FROM d JOIN pg_type dt ON dt.oid = d.oid JOIN pg_type bt ON bt.oid = d.base
		WHERE bt.typtype <> 'd'`)
	if err != nil {
		return nil, fmt.Errorf("read the domain types from pg_type: %w", err)
	}
	defer rows.Close()
	base := map[uint32]baseType{}
	for rows.Next() {
		var oid, to, arr, baseArr int64
		var mod int32
		if err := rows.Scan(&oid, &to, &mod, &arr, &baseArr); err != nil {
			return nil, fmt.Errorf("read the domain types from pg_type: %w", err)
		}
		base[uint32(oid)] = baseType{oid: uint32(to), mod: mod}
		if arr != 0 && baseArr != 0 {
			base[uint32(arr)] = baseType{oid: uint32(baseArr), mod: -1}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the domain types from pg_type: %w", err)
	}
	return base, nil
}

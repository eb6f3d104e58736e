package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/transform"
)

// ErrSlotLost means the replication slot is gone or invalidated while the
// sink holds a checkpoint: changes were lost to tilefeed and only a fresh
// start (new store, or new connector name) can make features exact again.
var ErrSlotLost = errors.New("replication slot lost")

var timeTypes = map[string]bool{"timestamp with time zone": true, "timestamp without time zone": true, "date": true}

var numericTypes = map[string]bool{"smallint": true, "integer": true, "bigint": true, "numeric": true,
	"real": true, "double precision": true}

// orderedTypes are the types whose values min and max order as PostgreSQL
// does (docs/types.md). Others arrive as text that does not sort like
// the values (enum, inet, money, timetz, intervals with months, json) or
// have no order (arrays, composites).
var orderedTypes = map[string]bool{"text": true, "character varying": true, "character": true, `"char"`: true,
	"name": true, "bytea": true, "boolean": true, "uuid": true, "date": true, "time without time zone": true,
	"timestamp without time zone": true, "timestamp with time zone": true}

// byteOrder are the collations that sort text as its UTF-8 bytes, as
// tilefeed's min and max do.
var byteOrder = map[string]bool{"C": true, "POSIX": true, "C.UTF-8": true, "C.utf8": true, "ucs_basic": true}

// typeModifier matches a type modifier as format_type writes it:
// numeric(30,10), character varying(20), timestamp(3) with time zone.
var typeModifier = regexp.MustCompile(`\(\d+(,-?\d+)?\)`)

// plainType is a type name without its modifier.
func plainType(t string) string { return typeModifier.ReplaceAllString(t, "") }

// Setup checks the feature tables against the live database (every
// problem at once), sets replica identities asked for, and makes sure the
// publication and the slot exist. resume is the checkpoint's position (0
// when the sink has none): a missing slot with a checkpoint is fatal.
func (s *Source) Setup(ctx context.Context, engine *transform.Engine, resume uint64) error {
	conn, err := pgx.Connect(ctx, s.cfg.ConnString())
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL at %s:%d database %s as %s: %w", s.cfg.Host, s.cfg.Port, s.cfg.DBName, s.cfg.User, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("wal_level is %q: set wal_level = logical in postgresql.conf and restart PostgreSQL", walLevel)
	}
	if _, err := s.checkTables(ctx, conn, engine, true); err != nil {
		return err
	}
	if err := s.ensurePublication(ctx, conn, engine.Tables()); err != nil {
		return err
	}
	s.tables = engine.Tables()
	s.engine = engine
	s.snapshotPending, s.snapProg, s.filterProg, s.finished = false, nil, nil, false
	return s.ensureSlot(ctx, conn, resume)
}

// checkTables checks the feature groups' tables, columns, types and
// replica identities. With apply it sets the replica identities that
// replica.identity.autoset.values names; without, it checks them as if
// set and returns what it would set (validate -live changes nothing).
func (s *Source) checkTables(ctx context.Context, conn *pgx.Conn, engine *transform.Engine, apply bool) (wouldSet []string, err error) {
	if err := s.types.load(ctx, conn); err != nil {
		return nil, err
	}
	var problems []error
	for _, g := range engine.Groups() {
		schema, table, _ := strings.Cut(g.Table, ".")
		// collation: what the column's text sorts by ('' for types
		// without one), the database's for "default".
		rows, err := conn.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int8, a.atttypmod, c.relreplident, c.relkind,
				coalesce((SELECT CASE WHEN co.collname = 'default' THEN (SELECT datcollate FROM pg_database WHERE datname = current_database())
					ELSE coalesce(co.collcollate, co.collname) END FROM pg_collation co WHERE co.oid = a.attcollation), '')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
			WHERE n.nspname = $1 AND c.relname = $2`, schema, table)
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", g.Table, err)
		}
		types, collations := map[string]string{}, map[string]string{}
		var ident, kind string
		domains := map[string]baseType{}
		for rows.Next() {
			var name, typ, coll string
			var oid int64
			var mod int32
			if err := rows.Scan(&name, &typ, &oid, &mod, &ident, &kind, &coll); err != nil {
				rows.Close()
				return nil, err
			}
			types[name], collations[name] = typ, coll
			if base, bmod, err := s.types.resolve(uint32(oid), mod); err != nil {
				rows.Close()
				return nil, err
			} else if base != uint32(oid) {
				domains[name] = baseType{oid: base, mod: bmod}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", g.Table, err)
		}
		// A domain is checked as its base type: its values are decoded so.
		for name, t := range domains {
			var typ string
			if err := conn.QueryRow(ctx, "SELECT format_type($1::int8::oid, $2)", int64(t.oid), t.mod).Scan(&typ); err != nil {
				return nil, fmt.Errorf("read the base type of %s.%s: %w", g.Table, name, err)
			}
			types[name] = typ
		}
		g.SetKeyTypes(types) // reads check key values against them
		if len(types) == 0 {
			problems = append(problems, fmt.Errorf("feature group %s: table %s does not exist", g.Name, g.Table))
			continue
		}
		for _, col := range g.Columns() {
			if _, ok := types[col]; !ok {
				problems = append(problems, fmt.Errorf("feature group %s: column %q does not exist in %s", g.Name, col, g.Table))
			}
		}
		if g.TimeCol != "" && types[g.TimeCol] != "" && !timeTypes[plainType(types[g.TimeCol])] {
			problems = append(problems, fmt.Errorf("feature group %s: time column %s.%s is %s, not a timestamp or date", g.Name, g.Table, g.TimeCol, types[g.TimeCol]))
		}
		for _, a := range g.Aggs {
			typ := types[a.Column]
			plain := plainType(typ)
			if (a.Function == "sum" || a.Function == "avg") && typ != "" && !numericTypes[plain] {
				problems = append(problems, fmt.Errorf("feature group %s: %s(%s) needs a number, but %s.%s is %s", g.Name, a.Function, a.Column, g.Table, a.Column, typ))
			}
			if (a.Function == "min" || a.Function == "max") && typ != "" && !numericTypes[plain] && !orderedTypes[plain] {
				problems = append(problems, fmt.Errorf("feature group %s: %s(%s) cannot order %s.%s, which is %s, as PostgreSQL does; use count, distinct, first or last on it, or a column of a number, text, bytea, boolean, uuid, date, time or timestamp type",
					g.Name, a.Function, a.Column, g.Table, a.Column, typ))
			}
			if coll := collations[a.Column]; (a.Function == "min" || a.Function == "max") && !byteOrder[coll] && coll != "" {
				problems = append(problems, fmt.Errorf(`feature group %s: %s(%s) compares text byte by byte (COLLATE "C"), but %s.%s sorts by collation %q, so PostgreSQL's %s would differ; give the column COLLATE "C", or use count, distinct, first or last on it`,
					g.Name, a.Function, a.Column, g.Table, a.Column, coll, a.Function))
			}
			if a.Function == "days_since_last" && typ != "" && !timeTypes[plain] {
				problems = append(problems, fmt.Errorf("feature group %s: days_since_last(%s) needs a timestamp or date, but it is %s", g.Name, a.Column, typ))
			}
		}
		if want, ok := s.cfg.ReplicaIdentityAutoset[g.Table]; ok {
			if err := setReplicaIdentity(ctx, conn, g.Table, want, apply); err != nil {
				problems = append(problems, err)
				continue
			}
			if !apply && ident != identChar(want) && !slices.Contains(wouldSet, wouldSetText(want, g.Table, "")) {
				wouldSet = append(wouldSet, wouldSetText(want, g.Table, ""))
			}
			ident = identChar(want)
		}
		if kind == "p" {
			// A partitioned table publishes through its root
			// (publish_via_partition_root), but each partition logs its
			// own old rows, under its own replica identity.
			set, err := s.checkPartitions(ctx, conn, g, apply)
			if err != nil {
				problems = append(problems, err)
			}
			for _, w := range set {
				if !slices.Contains(wouldSet, w) {
					wouldSet = append(wouldSet, w)
				}
			}
			continue
		}
		if g.NeedsOldImage() && ident != "f" {
			problems = append(problems, fmt.Errorf("feature group %s aggregates or filters %s, so UPDATE and DELETE must carry the whole old row: run ALTER TABLE %s REPLICA IDENTITY FULL (or set replica.identity.autoset.values=%s:FULL)", g.Name, g.Table, quoteTable(g.Table), g.Table))
		}
	}
	return wouldSet, errors.Join(problems...)
}

// identChar is pg_class.relreplident for a replica.identity.autoset.values
// value.
func identChar(want string) string {
	if strings.HasPrefix(want, "INDEX") {
		return "i"
	}
	return strings.ToLower(want[:1])
}

// wouldSetText is what validate -live says the autoset would do.
func wouldSetText(want, table, partitionOf string) string {
	if partitionOf != "" {
		table += ", a partition of " + partitionOf + ","
	}
	return fmt.Sprintf("would set REPLICA IDENTITY %s on %s (replica.identity.autoset.values)", want, table)
}

func quoteTable(t string) string {
	schema, table, _ := strings.Cut(t, ".")
	return pgx.Identifier{schema, table}.Sanitize()
}

// setReplicaIdentity sets ident on table; without apply it only checks
// that ident is one PostgreSQL takes.
func setReplicaIdentity(ctx context.Context, conn *pgx.Conn, table, ident string, apply bool) error {
	var clause string
	switch {
	case ident == "FULL" || ident == "DEFAULT" || ident == "NOTHING":
		clause = ident
	case strings.HasPrefix(ident, "INDEX "):
		clause = "USING INDEX " + pgx.Identifier{strings.TrimSpace(ident[len("INDEX "):])}.Sanitize()
	default:
		return fmt.Errorf("replica.identity.autoset.values: %q for %s is not FULL, DEFAULT, NOTHING or INDEX name", ident, table)
	}
	if !apply {
		return nil
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE "+quoteTable(table)+" REPLICA IDENTITY "+clause); err != nil {
		return fmt.Errorf("set REPLICA IDENTITY %s on %s (replica.identity.autoset.values): %w", ident, table, err)
	}
	return nil
}

func (s *Source) ensurePublication(ctx context.Context, conn *pgx.Conn, tables []string) error {
	name := s.cfg.PublicationName
	var allTables bool
	var viaRoot bool
	err := conn.QueryRow(ctx, "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1", name).Scan(&allTables, &viaRoot)
	if err == nil && !viaRoot {
		var partitioned []string
		for _, t := range tables {
			var kind string
			if conn.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", t).Scan(&kind) == nil && kind == "p" {
				partitioned = append(partitioned, t)
			}
		}
		if len(partitioned) > 0 {
			return fmt.Errorf("publication %q publishes the partitions of %s under their own names: run ALTER PUBLICATION %s SET (publish_via_partition_root = true)",
				name, strings.Join(partitioned, ", "), name)
		}
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var stmt string
		// Partitioned tables publish as their root, as the feature groups
		// name them.
		const via = " WITH (publish_via_partition_root = true)"
		switch s.cfg.PublicationAutocreate {
		case "disabled":
			return fmt.Errorf("publication %q does not exist and publication.autocreate.mode is disabled: create it (CREATE PUBLICATION %s FOR TABLE %s)", name, name, strings.Join(tables, ", "))
		case "filtered":
			quoted := make([]string, len(tables))
			for i, t := range tables {
				quoted[i] = quoteTable(t)
			}
			stmt = "CREATE PUBLICATION " + pgx.Identifier{name}.Sanitize() + " FOR TABLE " + strings.Join(quoted, ", ") + via
		default:
			stmt = "CREATE PUBLICATION " + pgx.Identifier{name}.Sanitize() + " FOR ALL TABLES" + via
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create publication %q (%s): %w", name, s.cfg.PublicationAutocreate, err)
		}
		s.log.Info("created publication", "publication", name, "mode", s.cfg.PublicationAutocreate)
		return nil
	case err != nil:
		return fmt.Errorf("read publication %q: %w", name, err)
	case allTables:
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1", name)
	if err != nil {
		return fmt.Errorf("read tables of publication %q: %w", name, err)
	}
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read tables of publication %q: %w", name, err)
	}
	in := map[string]bool{}
	for _, t := range published {
		in[t] = true
	}
	var missing []string
	for _, t := range tables {
		if !in[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if s.cfg.PublicationAutocreate != "filtered" {
		return fmt.Errorf("publication %q does not include %s: add them (ALTER PUBLICATION %s ADD TABLE %s)", name, strings.Join(missing, ", "), name, strings.Join(missing, ", "))
	}
	for _, t := range missing {
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pgx.Identifier{name}.Sanitize()+" ADD TABLE "+quoteTable(t)); err != nil {
			return fmt.Errorf("add %s to publication %q: %w", t, name, err)
		}
	}
	s.log.Info("added tables to publication", "publication", name, "tables", missing)
	return nil
}

func (s *Source) ensureSlot(ctx context.Context, conn *pgx.Conn, resume uint64) error {
	name := s.cfg.SlotName
	var plugin, database string
	var walStatus *string
	var confirmed *string
	err := conn.QueryRow(ctx, `SELECT plugin, database, wal_status, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&plugin, &database, &walStatus, &confirmed)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read replication slot %q: %w", name, err)
	}
	if exists && plugin != "pgoutput" {
		return fmt.Errorf("replication slot %q uses plugin %q: tilefeed needs a pgoutput slot; pick another slot.name", name, plugin)
	}
	if exists && database != s.cfg.DBName {
		return fmt.Errorf("replication slot %q belongs to database %q, not %q", name, database, s.cfg.DBName)
	}
	mode := s.cfg.SnapshotMode
	var prog *progress
	if s.opts.Store != nil && mode != "no_data" {
		if prog, err = loadProgress(ctx, s.opts.Store, s.opts.Connector); err != nil {
			return err
		}
	}
	// A snapshot is under way while the checkpoint does not cover its end.
	inSnapshot := prog != nil && resume < prog.Slot

	// What makes the slot unable to continue the sink's features.
	var lost error
	switch {
	case !exists && (resume != 0 || prog != nil):
		at := change.FormatLSN(resume)
		if resume == 0 {
			at = "an unfinished snapshot"
		}
		lost = fmt.Errorf("%w: slot %q does not exist, but the sink holds a checkpoint at %s. The slot was dropped, so the changes since are gone for tilefeed and its features cannot be exact. Start afresh: remove the connector's records and checkpoint from the sink (or use a new connector name), or set snapshot.mode=when_needed to rebuild them, and restart",
			ErrSlotLost, name, at)
	case walStatus != nil && *walStatus == "lost":
		lost = fmt.Errorf("%w: slot %q was invalidated (wal_status lost: its WAL was removed, see max_slot_wal_keep_size). Drop it, remove the connector's records and checkpoint from the sink, and restart (or set snapshot.mode=when_needed to rebuild)", ErrSlotLost, name)
	case confirmed != nil && resume != 0:
		if lsn, err := parseLSN(*confirmed); err == nil && lsn > resume {
			lost = fmt.Errorf("%w: slot %q was acknowledged up to %s, past the sink's checkpoint %s: another consumer read it, and the changes between are gone for tilefeed. Use a slot of tilefeed's own and start afresh (or set snapshot.mode=when_needed to rebuild)",
				ErrSlotLost, name, *confirmed, change.FormatLSN(resume))
		}
	}

	switch mode {
	case "always":
		return s.rebuild(ctx, conn, exists, "snapshot.mode=always")
	case "when_needed":
		switch {
		case lost != nil:
			s.log.Warn("snapshot.mode=when_needed: the slot cannot continue the features; rebuilding them", "reason", lost)
			return s.rebuild(ctx, conn, exists, "the slot cannot serve the checkpoint")
		case exists && resume == 0 && !inSnapshot:
			return s.rebuild(ctx, conn, exists, "the slot exists but the sink has no checkpoint")
		case !exists:
			s.snapshotPending = true
			return nil
		}
	case "initial", "initial_only":
		switch {
		case mode == "initial_only" && !exists && resume != 0 && prog == nil:
			s.finished = true // taken before, and the slot dropped after it
			s.log.Info("snapshot.mode=initial_only: the snapshot was taken already; nothing to do", "checkpoint", change.FormatLSN(resume))
			return nil
		case lost != nil:
			return lost
		case !exists:
			// Created by Stream with an exported snapshot, which only lives
			// as long as the connection that created the slot.
			s.snapshotPending = true
			return nil
		case resume == 0 && !inSnapshot:
			return fmt.Errorf("replication slot %q exists but the sink has no checkpoint for this connector, so snapshot.mode=%s cannot take a snapshot consistent with it: drop the slot (SELECT pg_drop_replication_slot('%s')) to start with a snapshot, set snapshot.mode=when_needed to rebuild, or set snapshot.mode=no_data to stream from the slot's position", name, mode, name)
		}
	default: // no_data
		switch {
		case lost != nil:
			return lost
		case !exists:
			return s.createSlot(ctx)
		case resume == 0:
			s.log.Warn("the slot exists but the sink has no checkpoint: streaming from the slot's position; changes before it are not in the features", "slot", name, "confirmed_flush_lsn", deref(confirmed))
		}
		return nil
	}
	switch {
	case inSnapshot:
		s.snapshotPending, s.snapProg = true, prog
	case prog != nil && resume < prog.maxPoint():
		s.filterProg = prog
	}
	return nil
}

// rebuild makes the connector start from nothing: the slot dropped, the
// feature groups' sets emptied, the checkpoint reset, then a fresh
// snapshot. Nothing the sink held can be counted twice.
func (s *Source) rebuild(ctx context.Context, conn *pgx.Conn, slotExists bool, why string) error {
	store := s.opts.Store
	tr, ok := store.(interface {
		Truncate(ctx context.Context, set string) error
	})
	if !ok {
		return fmt.Errorf("snapshot.mode=%s must rebuild the features (%s), but the sink store cannot empty a set", s.cfg.SnapshotMode, why)
	}
	if slotExists {
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.cfg.SlotName); err != nil {
			return fmt.Errorf("drop replication slot %q to rebuild the features (%s): %w", s.cfg.SlotName, why, err)
		}
	}
	for _, g := range s.engine.Groups() {
		if err := tr.Truncate(ctx, g.Name); err != nil {
			return fmt.Errorf("empty the set of feature group %s to rebuild it: %w", g.Name, err)
		}
	}
	if err := connector.ResetCheckpoint(ctx, store, s.opts.Connector); err != nil {
		return err
	}
	s.log.Warn("rebuilding the features from a new snapshot", "why", why, "mode", s.cfg.SnapshotMode, "slot", s.cfg.SlotName,
		"groups", len(s.engine.Groups()))
	s.snapshotPending = true
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Check runs the live checks of Setup without changing anything: tables,
// columns, types and replica identities, these as replica.identity.
// autoset.values would set them. It returns what Setup would set.
func (s *Source) Check(ctx context.Context, engine *transform.Engine) ([]string, error) {
	conn, err := pgx.Connect(ctx, s.cfg.ConnString())
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d database %s as %s: %w", s.cfg.Host, s.cfg.Port, s.cfg.DBName, s.cfg.User, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return s.checkTables(ctx, conn, engine, false)
}

// checkPartitions checks (or, with replica.identity.autoset.values, sets)
// the replica identity of every leaf partition of a partitioned table.
func (s *Source) checkPartitions(ctx context.Context, conn *pgx.Conn, g *transform.Group, apply bool) (wouldSet []string, err error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname, c.relreplident::text
		FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf`, g.Table)
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s: %w", g.Table, err)
	}
	type part struct{ name, ident string }
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (part, error) {
		var p part
		return p, r.Scan(&p.name, &p.ident)
	})
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s: %w", g.Table, err)
	}
	want, autoset := s.cfg.ReplicaIdentityAutoset[g.Table]
	var notFull []string
	for _, p := range parts {
		if autoset {
			if err := setReplicaIdentity(ctx, conn, p.name, want, apply); err != nil {
				return nil, err
			}
			if !apply && p.ident != identChar(want) {
				wouldSet = append(wouldSet, wouldSetText(want, p.name, g.Table))
			}
			continue
		}
		if g.NeedsOldImage() && p.ident != "f" {
			notFull = append(notFull, p.name)
		}
	}
	if len(notFull) > 0 {
		return nil, fmt.Errorf("feature group %s aggregates or filters the partitioned table %s, so UPDATE and DELETE must carry whole old rows, but partitions %s are not REPLICA IDENTITY FULL: run ALTER TABLE … REPLICA IDENTITY FULL on each (or set replica.identity.autoset.values=%s:FULL, which sets it on every partition)",
			g.Name, g.Table, strings.Join(notFull, ", "), g.Table)
	}
	return wouldSet, nil
}

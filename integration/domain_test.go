package integration

import (
	"fmt"
	"strings"
	"testing"
)

// domainCols are columns of domain types: each must read as its base type
// (docs/types.md), so typedTruth's kinds and aggregates are the base's.
var domainCols = []typedCol{
	{"c_dom_int", "dom_int", "int", numberAggs},
	{"c_dom_num", "dom_num", "numeric", numberAggs},
	{"c_dom_text", `dom_text COLLATE "C"`, "text", orderedAggs},
	{"c_dom_dom", "dom_dom", "int", numberAggs},
	{"c_dom_arr", "dom_int[]", "array", unorderedAggs},
}

// TestDomainsSnapshotThenStream reads rows of domain-typed columns in the
// initial snapshot, then updates and deletes them while streaming: the
// snapshot decodes a domain by its base type (PostgreSQL's row
// description names the base), so the stream must too, or the retraction
// of a snapshot row takes back a value it never added. Every feature
// equals PostgreSQL's answer afterwards.
func TestDomainsSnapshotThenStream(t *testing.T) {
	conn, db := newDB(t)
	typesExec(t, conn,
		`CREATE DOMAIN dom_int AS int`,
		`CREATE DOMAIN dom_num AS numeric(10,2)`,
		`CREATE DOMAIN dom_text AS text CHECK (VALUE <> 'forbidden')`,
		`CREATE DOMAIN dom_dom AS dom_int CHECK (VALUE > -1000)`,
		typedTable("typed", domainCols),
		`ALTER TABLE typed REPLICA IDENTITY FULL`)
	insert := func(id, k int, values string) string {
		return fmt.Sprintf(`INSERT INTO typed VALUES (%d, %d, now() - interval '%d seconds', %s)`, id, k, 100-id, values)
	}
	typesExec(t, conn,
		insert(1, 1, `11, 1.5, 'a', 5, '{1,NULL}'`),
		insert(2, 1, `22, 2.25, 'b', 6, '{2}'`),
		insert(3, 2, `33, 3, 'c', 7, '{{1,2},{3,4}}'`),
		insert(4, 2, `NULL, NULL, NULL, NULL, NULL`))

	raw := typedConnector(db, storePath(t), typedGroups("typed", domainCols))
	raw = strings.Replace(raw, `"no_data"`, `"initial"`, 1)
	r := startRuntime(t, loadConnector(t, []byte(raw)))
	defer r.stop(t)
	waitSnapshot(t, r)

	// Every snapshot row is changed by the stream: a value the stream
	// decodes unlike the snapshot leaves the snapshot's in the features.
	typesExec(t, conn,
		`DELETE FROM typed WHERE id = 1`,
		`UPDATE typed SET c_dom_int = 44, c_dom_num = 4.5, c_dom_text = 'd', c_dom_dom = 8, c_dom_arr = '{9}' WHERE id = 2`,
		`UPDATE typed SET k = 1 WHERE id = 3`,
		`UPDATE typed SET c_dom_int = 55 WHERE id = 4`,
		insert(5, 2, `66, 6.75, 'e', 9, '{5}'`))
	waitSync(t, conn, r.read, 1)

	checkTyped(t, conn, r, "typed", domainCols, 5, 2)
}

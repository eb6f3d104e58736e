package integration

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/config"
)

// TestEndToEnd streams a mixed workload from PostgreSQL into the embedded
// store and checks every feature against SQL over the table.
func TestEndToEnd(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	endToEnd(t, conn, c)
}

// TestEndToEndAerospike is TestEndToEnd on a real Aerospike.
func TestEndToEndAerospike(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	withAerospike(t, c)
	endToEnd(t, conn, c)
}

func endToEnd(t *testing.T, conn *pgx.Conn, c *config.Connector) {
	r := startRuntime(t, c)
	defer r.stop(t)
	w := newWorkload(conn, 1)
	w.run(t, 300)
	waitSync(t, conn, r.read, 1)
	at := time.Now()
	verify(t, conn, r.read, at, w.cards)
	// The same records read later: windows slide, nothing else changes.
	verify(t, conn, r.read, at.Add(7*time.Minute), w.cards)
	st := r.rt.Status()
	if st.ChangesTotal == 0 || st.Groups["card_activity"].Records == 0 {
		t.Errorf("status counts nothing: %+v", st)
	}
}

// TestRestartClean stops tilefeed mid-stream, writes while it is down, and
// restarts it: the features still equal SQL.
func TestRestartClean(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	w := newWorkload(conn, 2)
	r := startRuntime(t, c)
	w.run(t, 80)
	r.stop(t) // possibly before it read everything
	w.run(t, 80)
	r = startRuntime(t, c)
	defer r.stop(t)
	w.run(t, 80)
	waitSync(t, conn, r.read, 1)
	verify(t, conn, r.read, time.Now(), w.cards)
}

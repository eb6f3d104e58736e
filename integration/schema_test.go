package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tilefeed/tilefeed/transform"
)

// TestSchemaChanges: ADD COLUMN while streaming is picked up from the new
// RELATION message without a restart; dropping a column a feature reads
// stops tilefeed with an error naming the group and the column, instead of
// reading it as NULL.
func TestSchemaChanges(t *testing.T) {
	conn, db := newDB(t)
	c := loadConnector(t, connectorJSON(db, storePath(t), "127.0.0.1:0"))
	r := startRuntime(t, c)
	ctx := context.Background()
	w := newWorkload(conn, 15)
	w.run(t, 50)
	if _, err := conn.Exec(ctx, "ALTER TABLE transactions ADD COLUMN note text DEFAULT 'n/a'"); err != nil {
		t.Fatal(err)
	}
	w.run(t, 50)
	waitSync(t, conn, r.read, 1)
	verify(t, conn, r.read, time.Now(), w.cards)

	if _, err := conn.Exec(ctx, "ALTER TABLE transactions DROP COLUMN merchant"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO transactions (card_id, amount, status, created_at) VALUES (1, 2.50, 'approved', now())"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		var se *transform.SchemaError
		if !errors.As(err, &se) || se.Group != "card_activity" || se.Column != "merchant" || !strings.Contains(err.Error(), "dropped or renamed") {
			t.Errorf("want a schema error naming card_activity and merchant, got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tilefeed kept running after a column it reads was dropped")
	}
	r.store.Close()
}

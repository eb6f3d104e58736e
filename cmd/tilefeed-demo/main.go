// Command tilefeed-demo shows tilefeed's main job on a fresh machine: it
// starts a throwaway PostgreSQL, creates a payments schema, runs tilefeed
// (examples/card-fraud.json, embedded store) and a card workload, and
// prints live features next to the same figures computed by SQL.
//
//	go run ./cmd/tilefeed-demo [-duration 20s] [-keep=false]
//
// Run from a terminal it keeps serving after the workload, until Ctrl-C,
// so the URL it prints can be tried; elsewhere (CI, a pipe) it exits.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tilefeed/tilefeed/cmd/internal/app"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/export"
	"github.com/tilefeed/tilefeed/integration/pgcluster"
)

func main() {
	duration := flag.Duration("duration", 20*time.Second, "how long the workload runs")
	keep := flag.Bool("keep", terminal(os.Stdin) && terminal(os.Stdout), "keep serving after the workload until Ctrl-C (default: when run from a terminal)")
	example := flag.String("c", "examples/card-fraud.json", "connector file whose features to run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *example, *duration, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, example string, duration time.Duration, keep bool) error {
	dir, err := os.MkdirTemp("", "tilefeed-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("== starting a throwaway PostgreSQL (wal_level=logical)")
	pg, err := pgcluster.Start(ctx, filepath.Join(dir, "pg"))
	if err != nil {
		return err
	}
	defer pg.Stop()
	conn, err := pg.CreateDatabase(ctx, "payments")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		`CREATE TABLE transactions (id bigserial PRIMARY KEY, card_id int NOT NULL, merchant_id int NOT NULL,
			amount numeric(12,2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return err
		}
	}

	c, err := demoConnector(example, pg.Port, filepath.Join(dir, "features.db"))
	if err != nil {
		return err
	}
	fmt.Printf("== tilefeed: connector %s, embedded store %s\n", c.Name, c.Sink.EmbeddedPath)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tfCtx, stopTF := context.WithCancel(ctx)
	defer stopTF()
	started := make(chan app.Running, 1)
	done := make(chan error, 1)
	go func() { done <- app.Run(tfCtx, c, log, func(r app.Running) { started <- r }) }()
	var running app.Running
	select {
	case running = <-started:
	case err := <-done:
		return err
	}
	base := "http://" + running.Addr
	fmt.Printf("== serving on %s: try  curl '%s/v1/features/card_activity?card_id=7'\n", running.Addr, base)

	fmt.Printf("== workload: card payments for %s (inserts, declines, amount corrections, refunds)\n", duration)
	rng := rand.New(rand.NewPCG(1, 2))
	end := time.Now().Add(duration)
	nextPrint := time.Now().Add(4 * time.Second)
	var ids []int64
	for time.Now().Before(end) && ctx.Err() == nil {
		if err := step(ctx, conn, rng, &ids); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
		if time.Now().After(nextPrint) {
			nextPrint = time.Now().Add(4 * time.Second)
			show(ctx, conn, base, 7)
		}
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Println("== final features, next to SQL over the table")
	for _, card := range []int{3, 7, 11} {
		show(ctx, conn, base, card)
	}
	if err := demoExport(ctx, c, dir, duration); err != nil {
		fmt.Println("   export:", err)
	}
	st := running.Runtime.Status()
	fmt.Printf("== %d changes applied; durable position %s; commit→durable %.1f ms for the last batch\n",
		st.ChangesTotal, st.Durable, st.LagSeconds*1000)
	if keep {
		fmt.Printf("== still serving on %s: curl '%s/v1/features/card_activity?card_id=7'; Ctrl-C to stop\n", running.Addr, base)
		<-ctx.Done()
	}
	stopTF()
	return <-done
}

// demoExport writes a small spine (three cards, halfway through the
// workload and now) and prints the training set tilefeed export makes of
// it: the "now" rows equal the final features above.
func demoExport(ctx context.Context, c *config.Connector, dir string, workload time.Duration) error {
	g := c.Features[0].Name
	fmt.Printf("== a training set (tilefeed export -spine labels.csv -o training.csv -groups %s):\n", g)
	now := time.Now().UTC()
	spine := "card_id,ts,label\n"
	for i, card := range []int{3, 7, 11} {
		spine += fmt.Sprintf("%d,%s,%d\n%d,%s,%d\n", card, now.Add(-workload/2).Format(time.RFC3339Nano), i%2, card, now.Format(time.RFC3339Nano), (i+1)%2)
	}
	in, out := filepath.Join(dir, "labels.csv"), filepath.Join(dir, "training.csv")
	if err := os.WriteFile(in, []byte(spine), 0o600); err != nil {
		return err
	}
	if err := export.FromPostgres(ctx, c, export.Options{Spine: in, Out: out, Groups: []string{g}}); err != nil {
		return err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	fmt.Print(string(data))
	return nil
}

// terminal reports whether f is a terminal.
func terminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// demoConnector loads the example file and points it at the throwaway
// database and a temporary embedded store.
func demoConnector(path string, port int, store string) (*config.Connector, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file map[string]any
	if err := json.Unmarshal(raw, &file); err != nil {
		return nil, err
	}
	props, _ := file["config"].(map[string]any)
	if props == nil {
		return nil, fmt.Errorf("%s: want the {\"name\", \"config\", \"features\"} shape", path)
	}
	for k, v := range map[string]any{
		"database.hostname": "127.0.0.1", "database.port": port, "database.user": "postgres",
		"database.password": "", "database.dbname": "payments", "database.sslmode": "disable",
		"tilefeed.sink": "embedded", "embedded.path": store, "http.listen": "127.0.0.1:0",
		"heartbeat.interval.ms": 1000,
	} {
		props[k] = v
	}
	delete(props, "aerospike.hosts")
	raw, _ = json.Marshal(file)
	return config.Parse(raw, os.Getenv)
}

func step(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, ids *[]int64) error {
	switch p := rng.IntN(100); {
	case p < 80 || len(*ids) == 0:
		status := "approved"
		if rng.IntN(10) == 0 {
			status = "declined"
		}
		var id int64
		err := conn.QueryRow(ctx, `INSERT INTO transactions (card_id, merchant_id, amount, status)
			VALUES ($1, $2, $3::numeric, $4) RETURNING id`,
			rng.IntN(20), rng.IntN(30), fmt.Sprintf("%d.%02d", 1+rng.IntN(300), rng.IntN(100)), status).Scan(&id)
		*ids = append(*ids, id)
		return err
	case p < 92:
		id := (*ids)[rng.IntN(len(*ids))]
		_, err := conn.Exec(ctx, "UPDATE transactions SET amount = amount + 1.50 WHERE id = $1", id)
		return err
	default:
		i := rng.IntN(len(*ids))
		id := (*ids)[i]
		*ids = append((*ids)[:i], (*ids)[i+1:]...)
		_, err := conn.Exec(ctx, "DELETE FROM transactions WHERE id = $1", id)
		return err
	}
}

func show(ctx context.Context, conn *pgx.Conn, base string, card int) {
	resp, err := http.Get(fmt.Sprintf("%s/v1/features/card_activity?card_id=%d", base, card))
	if err != nil {
		fmt.Println("   read:", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		Features  map[string]any `json:"features"`
		UpdatedAt *time.Time     `json:"updated_at"`
	}
	_ = json.Unmarshal(body, &out)
	var cnt int64
	var sum string
	_ = conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount), 0)::text FROM transactions
		WHERE card_id = $1 AND status != 'declined' AND created_at > now() - interval '1 hour'`, card).Scan(&cnt, &sum)
	fresh := "-"
	if out.UpdatedAt != nil {
		fresh = time.Since(*out.UpdatedAt).Round(time.Millisecond).String()
	}
	fmt.Printf("   card %-3d tilefeed: txn_count_1h=%v amount_sum_1h=%v amount_max_24h=%v merchants_1h=%v (last change %s ago)\n",
		card, out.Features["txn_count_1h"], out.Features["amount_sum_1h"], out.Features["amount_max_24h"], out.Features["merchants_1h"], fresh)
	fmt.Printf("   card %-3d SQL:      txn_count_1h=%d amount_sum_1h=%s\n", card, cnt, sum)
}

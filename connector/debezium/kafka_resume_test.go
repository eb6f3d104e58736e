package debezium

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/serve"
	"github.com/tilefeed/tilefeed/transform"
)

// TestKafkaResumeShowsStreams: after a restart, the partitions the
// checkpoint holds are resumed in one log line (none is "new"), the
// status shows every partition's durable offset and position before any
// new batch, and an entity read names its partitions' positions instead
// of the zero position "0/0#0".
func TestKafkaResumeShowsStreams(t *testing.T) {
	t.Parallel()
	_, first, _ := simulate(5)
	c, st := cluster(t), openStore(t)
	produce(t, c, first)
	r := start(t, source(t, c, config.Source{}, simTopics()), st, simFeatures, connector.Options{})
	want := ends(first)
	waitFor(t, r, "every partition's end", caughtUp(t, st, want))
	if err := r.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	k, err := NewKafka(config.Source{Kafka: config.Kafka{Brokers: c.ListenAddrs()}}, simTopics(), &decode.Debezium{}, log, connector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	k.poll = 20 * time.Millisecond
	e, err := transform.Compile(simFeatures)
	if err != nil {
		t.Fatal(err)
	}
	// No idle checkpoint during the test: what the status shows comes from
	// the stored checkpoint.
	rt := connector.New("c", k, st, e, log, connector.NewMetrics(prometheus.NewRegistry()), connector.Options{IdleCheckpoint: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	var status connector.Status
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(time.Millisecond) {
		if status = rt.Status(); status.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runtime did not start: %+v", status)
		}
	}
	cp := checkpoint(t, st)
	for name, end := range want {
		if status.Offsets[name] != end {
			t.Errorf("status right after the restart: %s at offset %d, want %d", name, status.Offsets[name], end)
		}
		if status.StreamPositions[name] != cp.Streams[name].Pos.String() {
			t.Errorf("status right after the restart: %s at position %q, want %q", name, status.StreamPositions[name], cp.Streams[name].Pos)
		}
	}
	if status.Durable != "" || status.ResumeLSN != "" {
		t.Errorf("a multi-stream source shows one position: durable %q, resume %q", status.Durable, status.ResumeLSN)
	}
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(logs.String(), "resuming kafka partitions"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no resume log line:\n%s", logs.String())
		}
	}
	if strings.Contains(logs.String(), "new kafka partition") {
		t.Errorf("a resume called checkpointed partitions new:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "resuming kafka partitions"); n != 1 {
		t.Errorf("%d resume lines, want one:\n%s", n, logs.String())
	}

	ents, err := (&serve.Reader{Engine: e, Store: st}).Read(context.Background(), "orders", [][]string{{"1"}}, time.Now())
	if err != nil || !ents[0].Found {
		t.Fatalf("read customer 1: %+v, %v", ents, err)
	}
	j := ents[0].JSON()
	if _, ok := j["position"]; ok {
		t.Errorf("entity of a Kafka source shows position %v", j["position"])
	}
	ps, _ := j["positions"].(map[string]string)
	if len(ps) == 0 {
		t.Fatalf("entity of a Kafka source shows no positions: %v", j)
	}
	for name, p := range ps {
		if !strings.HasPrefix(name, ordersTopic+"/") || p == "0/0#0" {
			t.Errorf("position %q of stream %q", p, name)
		}
	}
}

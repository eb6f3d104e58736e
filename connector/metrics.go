package connector

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrorKinds are the values of tilefeed_errors_total's kind label; each
// series exists at 0 from the start, so rate() alerts work before the
// first error.
var ErrorKinds = []string{"source", "sink", "conflict", "data", "decode", "heartbeat", "kafka_commit"}

// Metrics is tilefeed's metrics catalog: every metric, its labels and its
// help, in one place. Register it on the registry the HTTP listener serves.
type Metrics struct {
	ChangesRead     *prometheus.CounterVec
	ChangesApplied  *prometheus.CounterVec
	ChangesSkipped  prometheus.Counter
	RecordsWritten  *prometheus.CounterVec
	Unmatched       *prometheus.CounterVec
	BatchChanges    prometheus.Histogram
	ApplySeconds    prometheus.Histogram
	CommitToDurable prometheus.Histogram
	Errors          *prometheus.CounterVec
	ReceivedLSN     prometheus.Gauge
	DurableLSN      prometheus.Gauge
	SlotLagBytes    prometheus.Gauge
	SourceConnected prometheus.Gauge
	CacheEntities   prometheus.Gauge
	CacheBytes      prometheus.Gauge
	DeadLetters     prometheus.Counter
	SnapshotRows    *prometheus.CounterVec
	// SnapshotDone and SnapshotEstimated are the snapshot's progress per
	// table; SnapshotChunks counts chunks by origin: "read" from the
	// database, "replayed" from the sink's write-ahead staging after a
	// restart.
	SnapshotDone      *prometheus.GaugeVec
	SnapshotEstimated *prometheus.GaugeVec
	SnapshotChunks    *prometheus.CounterVec
	KafkaLag          *prometheus.GaugeVec
	BuildInfo         *prometheus.GaugeVec
	// GroupLastCommit is each group's last durable commit time; freshness
	// turns it into seconds since, computed at each scrape.
	GroupLastCommit *prometheus.GaugeVec
	freshness       *freshness
}

// NewMetrics creates the catalog and registers it on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ChangesRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_changes_read_total",
			Help: "Row changes read from the source, by table."}, []string{"table"}),
		ChangesApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_changes_applied_total",
			Help: "Row changes applied and durable in the sink, by table."}, []string{"table"}),
		ChangesSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tilefeed_changes_replayed_total",
			Help: "Row changes read again after a restart and skipped because the sink already had them."}),
		RecordsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_records_written_total",
			Help: "Entity records written to the sink, by feature group."}, []string{"group"}),
		Unmatched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_retractions_unmatched_total",
			Help: "Retractions (UPDATE/DELETE of a row) that found no contribution to take back: rows added before tilefeed started streaming, by feature group."}, []string{"group"}),
		BatchChanges: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tilefeed_batch_changes",
			Help: "Changes per sink batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		ApplySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tilefeed_apply_seconds",
			Help: "Time to apply one batch: read records, compute, write records and checkpoint.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}),
		CommitToDurable: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tilefeed_commit_to_durable_seconds",
			Help: "From a transaction's commit in the source to its features being durable in the sink: one value per transaction (per batch, from its newest commit, for a source without transaction markers).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_errors_total",
			Help: "Errors by kind: source (lost replication or Kafka connection), sink (failed writes), conflict (a record changed under tilefeed), data (a change a group cannot use), decode (a record that does not decode), heartbeat (a failed heartbeat.action.query), kafka_commit (a refused consumer-group commit)."}, []string{"kind"}),
		ReceivedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tilefeed_received_lsn",
			Help: "Commit LSN of the last change received from the source."}),
		DurableLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tilefeed_durable_lsn",
			Help: "Source position durable in the sink and acknowledged to the slot."}),
		SlotLagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tilefeed_replication_slot_lag_bytes",
			Help: "Bytes of WAL between the server's current position and the slot's confirmed flush position."}),
		SourceConnected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tilefeed_source_connected",
			Help: "1 while the source is connected: the replication connection, or every Kafka broker tried last."}),
		CacheEntities: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tilefeed_cache_entities",
			Help: "Entity records held in memory."}),
		CacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tilefeed_cache_bytes",
			Help: "Bytes of the entity records held in memory (bounded by cache.max.bytes)."}),
		SnapshotRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_snapshot_rows_total",
			Help: "Rows read by the initial snapshot, by table."}, []string{"table"}),
		SnapshotDone: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tilefeed_snapshot_rows_done",
			Help: "Rows of the snapshot handed to the runtime so far (across restarts), by table."}, []string{"table"}),
		SnapshotEstimated: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tilefeed_snapshot_rows_estimated",
			Help: "Rows the snapshot expects to read (pg_class.reltuples when it started), by table."}, []string{"table"}),
		SnapshotChunks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tilefeed_snapshot_chunks_total",
			Help: "Snapshot chunks by origin: read (from the database) or replayed (from the sink's write-ahead staging after a restart)."}, []string{"origin"}),
		KafkaLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tilefeed_kafka_lag_records",
			Help: "Records of a Kafka partition not yet durable in the sink: its high watermark minus the checkpointed offset."}, []string{"topic", "partition"}),
		GroupLastCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tilefeed_group_last_commit_timestamp_seconds",
			Help: "Commit time (Unix seconds) of the last change applied and durable, by feature group."}, []string{"group"}),
		freshness: &freshness{last: map[string]time.Time{}, now: time.Now, desc: prometheus.NewDesc("tilefeed_group_freshness_seconds",
			"Seconds from the group's last durable commit to now, as a reader sees it: grows while no change reaches the group. Absent until the group's first change.", []string{"group"}, nil)},
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tilefeed_build_info",
			Help: "Always 1: the build of this process, by version (the module's, or devel), VCS revision and Go version."}, []string{"version", "revision", "go"}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{Name: "tilefeed_dead_letters_total",
			Help: "Changes a feature group could not use, written to the dead-letter set (errors.tolerance=all)."}),
	}
	reg.MustRegister(m.DeadLetters, m.SnapshotRows, m.SnapshotDone, m.SnapshotEstimated, m.SnapshotChunks, m.ChangesRead, m.ChangesApplied, m.ChangesSkipped, m.RecordsWritten, m.Unmatched,
		m.BatchChanges, m.ApplySeconds, m.CommitToDurable, m.Errors, m.ReceivedLSN, m.DurableLSN,
		m.SlotLagBytes, m.SourceConnected, m.CacheEntities, m.CacheBytes, m.KafkaLag, m.BuildInfo, m.GroupLastCommit, m.freshness)
	for _, k := range ErrorKinds {
		m.Errors.WithLabelValues(k)
	}
	m.BuildInfo.WithLabelValues(buildInfo()).Set(1)
	return m
}

// buildInfo returns the version, VCS revision and Go version of this
// binary ("devel" and "unknown" where the build does not say).
func buildInfo() (version, revision, goVersion string) {
	version, revision, goVersion = "devel", "unknown", runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return
}

// groupsDurable shows the groups' durable progress.
func (m *Metrics) groupsDurable(groups map[string]GroupStatus) {
	for g, gs := range groups {
		if gs.LastCommit.IsZero() {
			continue
		}
		m.GroupLastCommit.WithLabelValues(g).Set(float64(gs.LastCommit.UnixMicro()) / 1e6)
		m.freshness.set(g, gs.LastCommit)
	}
}

// freshness collects tilefeed_group_freshness_seconds: now minus each
// group's last durable commit, at scrape time.
type freshness struct {
	desc *prometheus.Desc
	now  func() time.Time
	mu   sync.Mutex
	last map[string]time.Time
}

func (f *freshness) set(group string, at time.Time) {
	f.mu.Lock()
	f.last[group] = at
	f.mu.Unlock()
}

func (f *freshness) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *freshness) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	for g, at := range f.last {
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, now.Sub(at).Seconds(), g)
	}
}

// known creates the series of the labels known from the feature groups
// (groups, tables) at 0, so they exist before the first change.
func (m *Metrics) known(groups, tables []string) {
	for _, g := range groups {
		m.RecordsWritten.WithLabelValues(g)
		m.Unmatched.WithLabelValues(g)
	}
	for _, t := range tables {
		m.ChangesRead.WithLabelValues(t)
		m.ChangesApplied.WithLabelValues(t)
	}
}

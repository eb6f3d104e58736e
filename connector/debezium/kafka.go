package debezium

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
)

var (
	// ErrTopicMissing reports a Kafka topic to read that does not exist.
	ErrTopicMissing = errors.New("kafka topic does not exist")
	// ErrPartitionLost reports records of a partition that are gone before
	// tilefeed read them (retention, a truncated log, a recreated topic):
	// the changes they held would be missing from the features.
	ErrPartitionLost = errors.New("kafka partition lost records tilefeed had not read")
)

// Bounds on what franz-go buffers while the runtime is busy: at most
// maxConcurrentFetches fetches of at most fetchMaxBytes each, plus the
// pollRecords records in hand.
const (
	fetchMaxBytes        = 8 << 20
	maxConcurrentFetches = 2
	pollRecords          = 1000
)

// Kafka is the source of Debezium change events in Kafka topics. Each
// topic partition is one ordered stream, named "<topic>/<partition>",
// with its own Converter; the runtime keeps each partition's next offset
// in the sink's checkpoint, beside the data it covers, and Stream starts
// every partition exactly there. No consumer group is used: Kafka's
// committed offsets could run ahead of or behind the sink, the
// checkpoint cannot.
//
// Every record reaches the runtime as one event carrying the partition's
// next offset: a change, a heartbeat for a record that carries none
// (tombstone, transaction metadata, logical decoding message), or an
// Invalid event for a record that does not decode (errors.tolerance
// decides). Nothing is dropped silently.
//
// Partitions are listed when Stream starts and again every minute; a
// partition or, with topics.regex, a topic created while running is read
// from its start. Records are read with isolation read_committed, so the
// records of aborted transactions (Kafka Connect's exactly-once source
// support) never arrive. A record Debezium sends again takes the position
// it had (Converter), also right after a restart: the few records before
// the checkpointed offset are read again to seed the converter.
// docs/kafka-source.md gives the reasons.
type Kafka struct {
	topics  []string
	regex   *regexp.Regexp
	brokers []string
	opts    []kgo.Opt
	decode  decodeFunc
	log     *slog.Logger
	metrics *connector.Metrics

	// poll bounds one wait for records, so that partition discovery and
	// a stop are not held up by quiet partitions.
	poll time.Duration
	// rediscover is how often partitions and topics are listed again.
	rediscover time.Duration

	// group is kafka.group.id: the durable offsets are committed to it
	// every commitEvery, for monitoring only. committed and topicIDs
	// belong to the goroutine in Stream.
	group       string
	commitEvery time.Duration
	lastCommit  time.Time
	committed   map[string]int64
	commitErr   string // the last commit failure logged
	topicIDs    map[string][16]byte

	mu        sync.Mutex
	health    error                          // why Kafka cannot be read now; nil when it can
	brokerErr map[int32]error                // failed connection attempts, by broker node
	durable   map[string]connector.StreamPos // last acknowledged; never modified
	hwm       map[string]int64               // high watermarks, by stream
}

// NewKafka returns a source reading topics (resolved by the caller: the
// topics property, or DefaultTopics) or, when cfg.Kafka.TopicsRegex is
// set, the topics it matches when Stream starts. Nothing connects until
// Stream.
func NewKafka(cfg config.Source, topics []string, dec *decode.Debezium, log *slog.Logger, m *connector.Metrics) (*Kafka, error) {
	var errs []error
	kc := cfg.Kafka
	if len(kc.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.bootstrap.servers: no brokers"))
	}
	if len(topics) == 0 && kc.TopicsRegex == nil {
		errs = append(errs, errors.New("topics: no Kafka topics to read (set topics or topics.regex)"))
	}
	format, err := ParseFormat(cfg.ValueConverter)
	if err != nil {
		errs = append(errs, fmt.Errorf("value.converter: %w", err))
	}
	keyFormat, err := ParseFormat(cfg.KeyConverter)
	if err != nil {
		errs = append(errs, fmt.Errorf("key.converter: %w", err))
	}
	if cfg.KeyConverter == "" {
		keyFormat = format
	}
	security, err := securityOpts(kc)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	k := &Kafka{
		topics: slices.Clone(topics), regex: kc.TopicsRegex, brokers: kc.Brokers, log: log, metrics: m,
		poll: time.Second, rediscover: time.Minute,
		group: kc.GroupID, commitEvery: 5 * time.Second, committed: map[string]int64{}, topicIDs: map[string][16]byte{},
		health:    errors.New("kafka: not connected yet"),
		brokerErr: map[int32]error{}, hwm: map[string]int64{},
	}
	// The key is decoded (and so checked) when it is in the value's format;
	// tilefeed reads entities from the row images, never from the key.
	withKey := keyFormat == format
	k.decode = func(key, value []byte) (decode.Envelope, error) {
		if !withKey {
			key = nil
		}
		if format == Avro {
			return dec.DecodeAvro(key, value)
		}
		return dec.DecodeJSON(key, value)
	}
	k.opts = append(security,
		kgo.SeedBrokers(kc.Brokers...),
		kgo.ClientID("tilefeed"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		// An offset that is not in the log any more is an error, never a
		// silent jump to the start or the end.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.MaxConcurrentFetches(maxConcurrentFetches),
		kgo.WithHooks(brokerHook{k}),
	)
	return k, nil
}

// tlsConfig verifies the brokers against kafka.tls.ca.file (the system's
// roots when unset) and presents kafka.tls.cert.file when set.
func tlsConfig(kc config.Kafka) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if kc.TLSCAFile != "" {
		pem, err := os.ReadFile(kc.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca.file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca.file %s holds no PEM certificate", kc.TLSCAFile)
		}
	}
	if (kc.TLSCertFile == "") != (kc.TLSKeyFile == "") {
		return nil, errors.New("kafka.tls.cert.file and kafka.tls.key.file: set both or neither")
	}
	if kc.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(kc.TLSCertFile, kc.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert.file, kafka.tls.key.file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// securityOpts turns kafka.security.protocol, the TLS files and the SASL
// properties into client options.
func securityOpts(kc config.Kafka) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	useTLS, useSASL := false, false
	switch kc.SecurityProtocol {
	case "", "PLAINTEXT":
	case "SSL":
		useTLS = true
	case "SASL_PLAINTEXT":
		useSASL = true
	case "SASL_SSL":
		useTLS, useSASL = true, true
	default:
		return nil, fmt.Errorf("kafka.security.protocol: %q is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", kc.SecurityProtocol)
	}
	if useTLS {
		tc, err := tlsConfig(kc)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if !useSASL {
		return opts, nil
	}
	if kc.SASLUser == "" {
		return nil, fmt.Errorf("kafka.sasl.username: required when kafka.security.protocol is %s", kc.SecurityProtocol)
	}
	var mech sasl.Mechanism
	switch kc.SASLMechanism {
	case "", "PLAIN":
		mech = plain.Auth{User: kc.SASLUser, Pass: string(kc.SASLPassword)}.AsMechanism()
	case "SCRAM-SHA-256":
		mech = scram.Auth{User: kc.SASLUser, Pass: string(kc.SASLPassword)}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		mech = scram.Auth{User: kc.SASLUser, Pass: string(kc.SASLPassword)}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", kc.SASLMechanism)
	}
	return append(opts, kgo.SASL(mech)), nil
}

// DefaultTopics returns the topics Debezium writes the tables to by
// default, <topic.prefix>.<schema>.<table>, sorted and without repeats;
// tables are schema-qualified ("public.orders").
func DefaultTopics(prefix string, tables []string) []string {
	out := make([]string, 0, len(tables))
	for _, t := range tables {
		out = append(out, prefix+"."+t)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// partition is one stream's reading state, owned by Stream's goroutine.
type partition struct {
	name  string // "<topic>/<partition>"
	conv  *Converter
	next  int64 // offset after the last record sent; 0 before any
	fresh bool  // no checkpointed offset: read from the log's start
	// resume is the checkpointed offset; the records before it are read
	// again only to seed the converter (Converter.Seed), never sent.
	resume int64
	seeds  []decode.Envelope
}

// seedWindow is how many records before the checkpointed offset are read
// again to remember the checkpoint's pair, for a pair's ordinal n.
func seedWindow(pos change.Position) int64 {
	if pos.LSN == 0 && pos.Seq == 0 {
		return 0 // snapshot rows: the Converter handles a snapshot sent again
	}
	return int64(min(pos.Ordinal, 256)) + 2 // the pair's records, and a tombstone
}

// Stream reads every partition of the topics from its checkpointed offset
// (from its start when the checkpoint has none) and sends one event per
// record, blocking while out is full. Unreachable brokers are retried
// (Ready says why nothing arrives); a missing topic or lost records stop
// it with an error marked connector.ErrFatal.
func (k *Kafka) Stream(ctx context.Context, from connector.Checkpoint, out chan<- change.Event) error {
	cl, err := kgo.NewClient(k.opts...)
	if err != nil {
		return fmt.Errorf("%w: kafka client: %w", connector.ErrFatal, err)
	}
	defer cl.Close()

	parts := map[string]*partition{}
	var topics map[string][]int32
	for attempt := 0; ; attempt++ {
		if topics, err = k.partitions(ctx, cl); err == nil {
			err = k.consume(ctx, cl, from, parts, topics) // changes nothing when it fails to list
		}
		if err == nil || errors.Is(err, connector.ErrFatal) {
			break
		}
		k.setHealth(err)
		if !connector.Sleep(ctx, connector.Reconnect(attempt)) {
			return ctx.Err()
		}
	}
	if err != nil {
		k.setHealth(err)
		return err
	}
	k.setHealth(nil)
	k.log.Info("reading kafka", "topics", slices.Sorted(maps.Keys(topics)), "partitions", len(parts))

	lastDiscovery := time.Now()
	for {
		if time.Since(lastDiscovery) >= k.rediscover {
			lastDiscovery = time.Now()
			topics, err := k.partitions(ctx, cl)
			if err == nil {
				err = k.consume(ctx, cl, from, parts, topics)
			}
			if errors.Is(err, connector.ErrFatal) {
				return err
			}
			// Otherwise the fetches fail too and say why.
		}
		if k.group != "" && time.Since(k.lastCommit) >= k.commitEvery {
			k.lastCommit = time.Now()
			k.commitOffsets(ctx, cl)
		}
		pollCtx, cancel := context.WithTimeout(ctx, k.poll)
		fetches := cl.PollRecords(pollCtx, pollRecords)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := k.fetchErrors(fetches); err != nil {
			return err
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		var sendErr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			name := streamName(fp.Topic, fp.Partition)
			p := parts[name]
			if sendErr != nil || p == nil {
				return
			}
			k.noteHighWatermark(name, fp.HighWatermark)
			if p.fresh && p.next == 0 && len(fp.Records) > 0 && fp.Records[0].Offset > 0 && p.resume == 0 {
				k.log.Warn("kafka partition does not start at offset 0: the records before were deleted (retention) or compacted before tilefeed read them, and the features miss their changes",
					"partition", name, "first_offset", fp.Records[0].Offset)
			}
			for _, r := range fp.Records {
				if r.Offset < p.resume {
					p.seed(k.decode, r)
					continue
				}
				if p.resume != 0 {
					p.endSeed()
				}
				if sendErr = emit(ctx, out, k.event(p, r)); sendErr != nil {
					return
				}
				p.next = r.Offset + 1
			}
		})
		if sendErr != nil {
			return sendErr
		}
	}
}

// consume starts reading the partitions of topics that are not read yet:
// at the checkpointed offset (a few records before it, to seed group),
// else at the log's start.
func (k *Kafka) consume(ctx context.Context, cl *kgo.Client, from connector.Checkpoint, parts map[string]*partition, topics map[string][]int32) error {
	starts, err := logStarts(ctx, cl, topics)
	if err != nil {
		return err
	}
	add := map[string]map[int32]kgo.Offset{}
	// A partition the checkpoint lacks is new when partitions were read
	// before it: found while running, or on a resume.
	later := len(parts) > 0 || len(from.Streams) > 0
	var resumed []string
	for topic, ps := range topics {
		for _, n := range ps {
			name := streamName(topic, n)
			if parts[name] != nil {
				continue
			}
			sp, ok := from.Streams[name]
			p := &partition{name: name, conv: NewConverter(sp.Pos), fresh: !ok || sp.Offset == 0}
			off := kgo.NewOffset().AtStart()
			if !p.fresh {
				if sp.Offset < starts[name] {
					return fmt.Errorf("%w: %w: %s starts at offset %d, after the checkpointed offset %d: retention deleted records tilefeed had not read (or the topic was recreated); the features miss their changes: rebuild them from an empty sink",
						connector.ErrFatal, ErrPartitionLost, name, starts[name], sp.Offset)
				}
				p.resume = sp.Offset
				off = kgo.NewOffset().At(max(sp.Offset-seedWindow(sp.Pos), starts[name]))
				resumed = append(resumed, name)
			} else if later && !ok {
				k.log.Info("new kafka partition: reading it from its start", "partition", name)
			}
			parts[name] = p
			if add[topic] == nil {
				add[topic] = map[int32]kgo.Offset{}
			}
			add[topic][n] = off
		}
	}
	if len(resumed) > 0 {
		slices.Sort(resumed)
		k.log.Info("resuming kafka partitions from the checkpointed offsets", "partitions", len(resumed), "first", resumed[0], "last", resumed[len(resumed)-1])
	}
	cl.AddConsumePartitions(add)
	return nil
}

// logStarts returns the first offset of each partition.
func logStarts(ctx context.Context, cl *kgo.Client, topics map[string][]int32) (map[string]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	for topic, ps := range topics {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, n := range ps {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = n, -2 // earliest
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka log start offsets: %w", err)
	}
	out := map[string]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("kafka log start offset of %s: %w", streamName(t.Topic, p.Partition), err)
			}
			out[streamName(t.Topic, p.Partition)] = p.Offset
		}
	}
	return out, nil
}

// partitions lists the partitions of the topics to read. A missing topic,
// or a regex that matches none, is fatal; anything else is worth a retry.
func (k *Kafka) partitions(ctx context.Context, cl *kgo.Client) (map[string][]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	if k.regex == nil {
		for _, t := range k.topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
	} // else nil Topics: every topic
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka metadata from %s: %w", strings.Join(k.brokers, ","), err)
	}
	out := map[string][]int32{}
	var missing []string
	for _, t := range resp.Topics {
		if t.Topic == nil || (k.regex != nil && (t.IsInternal || !k.regex.MatchString(*t.Topic))) {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			missing = append(missing, *t.Topic)
			continue
		case err != nil:
			return nil, fmt.Errorf("kafka topic %q: %w", *t.Topic, err)
		}
		k.topicIDs[*t.Topic] = t.TopicID
		for _, p := range t.Partitions {
			out[*t.Topic] = append(out[*t.Topic], p.Partition)
		}
		slices.Sort(out[*t.Topic])
	}
	switch {
	case len(missing) > 0:
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: %w: %s; check the topics property (default <topic.prefix>.<schema>.<table> of each feature table) and that Debezium has written to it (it creates a table's topic with the first event)",
			connector.ErrFatal, ErrTopicMissing, strings.Join(missing, ", "))
	case k.regex != nil && len(out) == 0:
		return nil, fmt.Errorf("%w: %w: topics.regex %s matches no topic", connector.ErrFatal, ErrTopicMissing, k.regex)
	}
	return out, nil
}

// event turns one record into the event that reports it.
func (k *Kafka) event(p *partition, r *kgo.Record) change.Event {
	ev, ok := record(k.decode, p.conv, p.name+"@"+strconv.FormatInt(r.Offset, 10), r.Key, r.Value)
	if !ok {
		// No change, but the partition moved on: say so, so that the
		// offset becomes durable.
		ev = change.Event{Op: change.Heartbeat, Origin: ev.Origin}
	}
	ev.Stream, ev.Offset = p.name, r.Offset+1
	return ev
}

// seed keeps a record before the checkpointed offset for Converter.Seed.
func (p *partition) seed(decodeRecord decodeFunc, r *kgo.Record) {
	if env, err := decodeRecord(r.Key, r.Value); err == nil && env.Kind == decode.KindChange {
		p.seeds = append(p.seeds, env)
	}
}

// endSeed hands the kept records to the converter.
func (p *partition) endSeed() {
	p.conv.Seed(p.seeds)
	p.seeds, p.resume = nil, 0
}

// fetchErrors returns the error that must stop the source, and notes the
// ones franz-go retries by itself, for Ready.
func (k *Kafka) fetchErrors(fetches kgo.Fetches) error {
	var retried error
	for _, fe := range fetches.Errors() {
		name := streamName(fe.Topic, fe.Partition)
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(fe.Err, context.DeadlineExceeded), errors.Is(fe.Err, context.Canceled):
			// the poll's own timeout, or a stop
		case errors.As(fe.Err, &loss):
			return fmt.Errorf("%w: %w: %s: offsets %d to %d are gone (unclean leader election or a truncated log); the features miss their changes: rebuild them from an empty sink",
				connector.ErrFatal, ErrPartitionLost, name, loss.ResetTo, loss.ConsumedTo)
		case errors.Is(fe.Err, kerr.OffsetOutOfRange):
			return fmt.Errorf("%w: %w: %s: the checkpointed offset is not in the log any more (retention deleted records tilefeed had not read, or the topic was recreated); the features miss their changes: rebuild them from an empty sink",
				connector.ErrFatal, ErrPartitionLost, name)
		case errors.Is(fe.Err, kerr.UnknownTopicOrPartition), errors.Is(fe.Err, kerr.UnknownTopicID):
			return fmt.Errorf("%w: %w: %s was deleted while tilefeed read it", connector.ErrFatal, ErrTopicMissing, name)
		default:
			retried = fmt.Errorf("kafka %s: %w", name, fe.Err)
			k.metrics.Errors.WithLabelValues("source").Inc()
		}
	}
	if retried != nil {
		k.setHealth(retried)
	} else if fetches.NumRecords() > 0 {
		k.setHealth(nil)
	}
	return nil
}

// commitOffsets commits the durable offsets that changed since the last
// commit to the consumer group kafka.group.id, as a consumer outside the
// group (generation -1) may, so that Kafka's tools show tilefeed's lag.
// tilefeed never reads them back. A failure is counted and logged (once
// per distinct failure), and the next round tries again.
func (k *Kafka) commitOffsets(ctx context.Context, cl *kgo.Client) {
	k.mu.Lock()
	durable := k.durable // replaced on each Ack, never modified
	k.mu.Unlock()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = k.group
	req.Generation = -1
	topics := map[string]int{}
	for _, name := range slices.Sorted(maps.Keys(durable)) {
		off := durable[name].Offset
		if off <= 0 || k.committed[name] == off {
			continue
		}
		i := strings.LastIndexByte(name, '/')
		topic := name[:i]
		part, err := strconv.ParseInt(name[i+1:], 10, 32)
		if err != nil {
			continue
		}
		ti, ok := topics[topic]
		if !ok {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = topic, k.topicIDs[topic] // by name up to v9, by ID from v10
			req.Topics = append(req.Topics, rt)
			ti = len(req.Topics) - 1
			topics[topic] = ti
		}
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = int32(part), off
		req.Topics[ti].Partitions = append(req.Topics[ti].Partitions, rp)
	}
	if len(req.Topics) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	var failed []error
	if err != nil {
		failed = append(failed, err)
	} else {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				name := streamName(t.Topic, p.Partition)
				if t.Topic == "" { // answered by topic ID (v10+)
					for n, id := range k.topicIDs {
						if id == t.TopicID {
							name = streamName(n, p.Partition)
						}
					}
				}
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					failed = append(failed, fmt.Errorf("%s: %w", name, err))
					continue
				}
				k.committed[name] = durable[name].Offset
			}
		}
	}
	if len(failed) == 0 {
		k.commitErr = ""
		return
	}
	k.metrics.Errors.WithLabelValues("kafka_commit").Inc()
	if msg := errors.Join(failed...).Error(); msg != k.commitErr {
		k.commitErr = msg
		k.log.Warn("kafka: committing the durable offsets to the consumer group failed (monitoring only: tilefeed resumes from the sink); retrying",
			"group", k.group, "err", msg)
	}
}

// Ack records what is durable: Kafka is told by commitOffsets, when
// kafka.group.id is set, since the offsets live in the sink. It updates
// the lag metric.
func (k *Kafka) Ack(cp connector.Checkpoint) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.durable = cp.Streams
	for name, hwm := range k.hwm {
		k.setLag(name, hwm)
	}
}

func (k *Kafka) noteHighWatermark(name string, hwm int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hwm[name] = hwm
	k.setLag(name, hwm)
}

// setLag sets the records of name between the durable offset and hwm;
// k.mu is held.
func (k *Kafka) setLag(name string, hwm int64) {
	i := strings.LastIndexByte(name, '/')
	k.metrics.KafkaLag.WithLabelValues(name[:i], name[i+1:]).Set(float64(max(hwm-k.durable[name].Offset, 0)))
}

// Ready reports why Kafka cannot be read now (brokers unreachable,
// failing fetches, not started), or nil.
func (k *Kafka) Ready() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(k.brokerErr)) {
		return k.brokerErr[id]
	}
	return k.health
}

func (k *Kafka) setHealth(err error) {
	k.mu.Lock()
	k.health = err
	k.mu.Unlock()
}

// brokerHook follows connection attempts to the brokers, for Ready and
// tilefeed_source_connected.
type brokerHook struct{ k *Kafka }

func (h brokerHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	k := h.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
		k.brokerErr[meta.NodeID] = fmt.Errorf("kafka broker %s unreachable (retrying): %w", addr, err)
		k.metrics.SourceConnected.Set(0)
		return
	}
	delete(k.brokerErr, meta.NodeID)
	if meta.NodeID >= 0 {
		// Seeds (negative ids) are only for the first metadata: once a
		// broker answers, their failures no longer matter.
		maps.DeleteFunc(k.brokerErr, func(id int32, _ error) bool { return id < 0 })
	}
	if len(k.brokerErr) == 0 {
		k.metrics.SourceConnected.Set(1)
	}
}

func streamName(topic string, partition int32) string {
	return topic + "/" + strconv.FormatInt(int64(partition), 10)
}

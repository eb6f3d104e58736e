package aerospike

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"

	"github.com/tilefeed/tilefeed/sink"
)

// Defaults for the zero values in Options.
const (
	defaultTimeout   = 5 * time.Second
	defaultBatchSize = 5000
)

// Server limits checked before anything is sent, so that a bad record fails
// the whole Put instead of being rejected by the server after its neighbours
// were written.
const (
	maxBinName = 15                   // bytes
	maxSetName = 63                   // bytes
	maxTTL     = 10 * 365 * 24 * 3600 // seconds; the server's MAX_ALLOWED_TTL
)

// Options configure a Store. Hosts and Namespace are required; the zero
// value of every other field means its default.
type Options struct {
	// Hosts are seed nodes as "host:port" (IPv6 as "[addr]:port"); one
	// reachable node is enough to discover the whole cluster.
	Hosts []string
	// Namespace holds every record the store reads and writes.
	Namespace string
	// User is the user for internal (password) authentication; empty for a
	// cluster without security.
	User string
	// Password is User's password. It is passed to the client only and never
	// appears in an error.
	Password string
	// TLS, when not nil, is the configuration for TLS connections to every
	// node; nil connects in plain TCP.
	TLS *tls.Config
	// TLSName is the name the nodes' certificates carry, when it differs
	// from the host names in Hosts. Only used with TLS.
	TLSName string
	// Timeout bounds each call (Open, Get, Put) from start to end, retries
	// included; a context deadline that comes sooner wins. Default 5s.
	Timeout time.Duration
	// BatchSize is the most records sent in one batch request; a larger Get
	// or Put is split into several requests. Default 5000.
	BatchSize int
}

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.BatchSize == 0 {
		o.BatchSize = defaultBatchSize
	}
	return o
}

// hosts parses and checks the options, reporting every problem at once.
func (o Options) hosts() ([]*as.Host, error) {
	var errs []error
	if len(o.Hosts) == 0 {
		errs = append(errs, errors.New("hosts: none given; want at least one host:port"))
	}
	hosts := make([]*as.Host, 0, len(o.Hosts))
	for i, hp := range o.Hosts {
		name, portText, err := net.SplitHostPort(strings.TrimSpace(hp))
		if err != nil {
			errs = append(errs, fmt.Errorf("hosts[%d] %q: want host:port: %w", i, hp, err))
			continue
		}
		port, err := strconv.Atoi(portText)
		if err != nil || port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("hosts[%d] %q: port %q is not a number in 1-65535", i, hp, portText))
			continue
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("hosts[%d] %q: host name is empty", i, hp))
			continue
		}
		h := as.NewHost(name, port)
		if o.TLS != nil {
			h.TLSName = o.TLSName
		}
		hosts = append(hosts, h)
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace: empty"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %s is negative", o.Timeout))
	}
	if o.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch_size: %d is negative", o.BatchSize))
	}
	if o.TLSName != "" && o.TLS == nil {
		errs = append(errs, errors.New("tls_name: set without a TLS configuration"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return hosts, nil
}

// Store is a sink store on one Aerospike namespace. It is safe for
// concurrent use.
type Store struct {
	client    *as.Client
	namespace string
	timeout   time.Duration
	batchSize int
	// keyOrdered is the policy that makes a map bin KEY_ORDERED.
	keyOrdered *as.MapPolicy
}

// Open connects to the cluster and checks that it has the namespace.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	hosts, err := opts.hosts()
	if err != nil {
		return nil, fmt.Errorf("aerospike options: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	where := strings.Join(opts.Hosts, ",")
	deadline := callDeadline(ctx, opts.Timeout)

	cp := as.NewClientPolicy()
	cp.User = opts.User
	cp.Password = opts.Password
	cp.TlsConfig = opts.TLS
	cp.Timeout = time.Until(deadline)
	client, aerr := as.NewClientWithPolicyAndHost(cp, hosts...)
	if aerr != nil {
		if client != nil {
			client.Close()
		}
		return nil, wrap(fmt.Sprintf("connect to aerospike at %s (check the hosts, TLS and credentials)", where), aerr)
	}
	if err := checkNamespace(client, opts.Namespace, deadline); err != nil {
		client.Close()
		return nil, fmt.Errorf("connect to aerospike at %s: %w", where, err)
	}
	return newStore(client, opts), nil
}

func newStore(client *as.Client, opts Options) *Store {
	return &Store{
		client:     client,
		namespace:  opts.Namespace,
		timeout:    opts.Timeout,
		batchSize:  opts.BatchSize,
		keyOrdered: as.NewMapPolicy(as.MapOrder.KEY_ORDERED, as.MapWriteMode.UPDATE),
	}
}

// checkNamespace fails early on a misspelt namespace, which would otherwise
// surface as a per-record error on the first write.
func checkNamespace(client *as.Client, ns string, deadline time.Time) error {
	nodes := client.GetNodes()
	if len(nodes) == 0 {
		return fmt.Errorf("%w: no cluster node is reachable", sink.ErrUnavailable)
	}
	ip := as.NewInfoPolicy()
	ip.Timeout = time.Until(deadline)
	for _, n := range nodes {
		info, err := n.RequestInfo(ip, "namespaces")
		if err != nil {
			return wrap(fmt.Sprintf("list namespaces on node %s", n), err)
		}
		have := strings.Split(info["namespaces"], ";")
		if !slices.Contains(have, ns) {
			return fmt.Errorf("namespace %q is not configured on node %s (it has %q); check the namespace option", ns, n, info["namespaces"])
		}
	}
	return nil
}

// Truncate removes every record of set: Aerospike's truncate, which drops
// the records last written before the server's current time, on every
// node. Records written after it returns are kept.
func (s *Store) Truncate(ctx context.Context, set string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.client.Truncate(nil, s.namespace, set, nil); err != nil {
		return wrap("truncate set "+set, err)
	}
	return nil
}

// Close closes the connections to the cluster.
func (s *Store) Close() error {
	s.client.Close()
	return nil
}

// callDeadline is when a call must be over: its timeout from now, or the
// context's deadline if that is sooner.
func callDeadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// setTimeout gives one request what is left until deadline. The client
// takes no context, so this is how cancellation by deadline reaches it.
func setTimeout(p *as.BasePolicy, deadline time.Time) bool {
	left := time.Until(deadline)
	if left <= 0 {
		return false
	}
	p.TotalTimeout = left
	if p.SocketTimeout > left {
		p.SocketTimeout = left
	}
	return true
}

func (s *Store) key(k sink.Key) (*as.Key, error) {
	if len(k.Set) > maxSetName {
		return nil, fmt.Errorf("set name is %d bytes, Aerospike allows %d", len(k.Set), maxSetName)
	}
	key, err := as.NewKey(s.namespace, k.Set, k.ID)
	if err != nil {
		return nil, err
	}
	return key, nil
}

// Get reads the records named by keys, in that order; a missing or expired
// record comes back with Gen 0 and nil Bins. TTL is the remaining lifetime
// in whole seconds (0: the record never expires).
func (s *Store) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]sink.Record, len(keys))
	akeys := make([]*as.Key, len(keys))
	for i, k := range keys {
		out[i].Key = k
		ak, err := s.key(k)
		if err != nil {
			return nil, fmt.Errorf("aerospike get: key %s: %w", k, err)
		}
		akeys[i] = ak
	}
	deadline := callDeadline(ctx, s.timeout)
	for start := 0; start < len(keys); start += s.batchSize {
		end := min(start+s.batchSize, len(keys))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := as.NewBatchPolicy()
		if !setTimeout(&p.BasePolicy, deadline) {
			return nil, fmt.Errorf("aerospike get: %w: timeout %s used up after %d of %d keys", sink.ErrUnavailable, s.timeout, start, len(keys))
		}
		found, err := s.client.BatchGet(p, akeys[start:end])
		if err != nil {
			return nil, wrap(fmt.Sprintf("aerospike get %d keys from namespace %s", end-start, s.namespace), err)
		}
		for j, r := range found {
			if r == nil {
				continue
			}
			rec := &out[start+j]
			bins, err := binsFromAerospike(r.Bins)
			if err != nil {
				return nil, fmt.Errorf("aerospike get: record %s: %w", rec.Key, err)
			}
			rec.Gen, rec.Bins = r.Generation, bins
			if r.Expiration != as.TTLDontExpire {
				rec.TTL = time.Duration(r.Expiration) * time.Second
			}
		}
	}
	return out, nil
}

// Put writes recs, each replacing the whole stored record (bins it does not
// name are gone) if and only if the stored generation equals its Gen (0: the
// record must not exist; sink.AnyGen: whatever is stored). A record with nil
// Bins (and Gen AnyGen) is deleted. Every record is checked before anything is sent;
// an invalid one fails the call with nothing written.
//
// Records are written independently, in batches of Options.BatchSize: when
// some conflict, the others are still written, and the error, returned once
// the whole call is done, is a *sink.ConflictError naming the conflicting
// keys. Records the store did not confirm (timeouts, unreachable nodes) make
// the error wrap sink.ErrUnavailable; records over the namespace's
// max-record-size make it a *sink.TooBigError (sink.ErrTooBig); other
// failures are returned with the key concerned. Several kinds together come back as one errors.Join. In
// every case, each record that was written carries its new generation in
// Gen, as the server reported it, and every other record keeps its Gen.
func (s *Store) Put(ctx context.Context, recs []sink.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	batch := make([]as.BatchRecordIfc, len(recs))
	for i := range recs {
		var op as.BatchRecordIfc
		var err error
		if recs[i].Bins == nil {
			op, err = s.batchDelete(&recs[i])
		} else {
			op, err = s.batchWrite(&recs[i])
		}
		if err != nil {
			return fmt.Errorf("aerospike put: record %s: %w", recs[i].Key, err)
		}
		batch[i] = op
	}

	var res putResult
	res.total = len(recs)
	deadline := callDeadline(ctx, s.timeout)
	for start := 0; start < len(batch); start += s.batchSize {
		end := min(start+s.batchSize, len(batch))
		if err := ctx.Err(); err != nil {
			res.stop(err, len(batch)-start)
			break
		}
		p := as.NewWriteBatchPolicy()
		if !setTimeout(&p.BasePolicy, deadline) {
			res.stop(fmt.Errorf("%w: timeout %s used up", sink.ErrUnavailable, s.timeout), len(batch)-start)
			break
		}
		cmdErr := s.client.BatchOperate(p, batch[start:end])
		unanswered := res.nUnanswered
		for i := start; i < end; i++ {
			res.record(&recs[i], batch[i].BatchRec())
		}
		if cmdErr != nil && res.nUnanswered > unanswered {
			// The request to a node failed as a whole (it timed out or the
			// node could not be reached), leaving its records unanswered.
			// Later batches are not sent.
			res.stop(wrap("batch write to namespace "+s.namespace, cmdErr), len(batch)-end)
			break
		}
		// Otherwise cmdErr, if any, repeats a result every record already
		// carries: the client sends a lone record for a node as a single
		// command and returns its failure (a conflict, say) as the batch's.
	}
	return res.err()
}

// batchWrite turns a record into one batch write: the policy carries the
// generation check, and the ops delete every stored bin and then write the
// record's bins, which replaces the record as a whole.
//
// Aerospike's own replace (RecordExistsAction REPLACE / REPLACE_ONLY) cannot
// be used: the server rejects CDT modify ops in a replacing write, and map
// bins need one (MapSetPolicyOp) to become KEY_ORDERED. A delete-all op
// followed by the writes, under CREATE_ONLY or UPDATE_ONLY, has the same
// effect and is allowed.
func (s *Store) batchWrite(r *sink.Record) (*as.BatchWrite, error) {
	key, err := s.key(r.Key)
	if err != nil {
		return nil, err
	}
	exp, err := expiration(r.TTL)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(r.Bins))
	nmaps := 0
	for name, v := range r.Bins {
		if v == nil {
			continue // a nil bin is an absent bin, as on read
		}
		if name == "" || len(name) > maxBinName {
			return nil, fmt.Errorf("bin name %q: Aerospike bin names are 1-%d bytes", name, maxBinName)
		}
		if err := checkValue(v); err != nil {
			return nil, fmt.Errorf("bin %q: %w", name, err)
		}
		if _, ok := v.(map[any]any); ok {
			nmaps++
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, errors.New("no bins: Aerospike cannot store a record without bins")
	}
	slices.Sort(names) // the same record always makes the same request

	ops := make([]*as.Operation, 0, 1+len(names)+nmaps)
	ops = append(ops, as.DeleteOp())
	for _, name := range names {
		v := r.Bins[name]
		ops = append(ops, as.PutOp(as.NewBin(name, v)))
		if _, ok := v.(map[any]any); ok {
			ops = append(ops, as.MapSetPolicyOp(s.keyOrdered, name))
		}
	}

	wp := as.NewBatchWritePolicy()
	wp.Expiration = exp
	switch r.Gen {
	case sink.AnyGen:
		wp.RecordExistsAction = as.UPDATE
	case 0:
		wp.RecordExistsAction = as.CREATE_ONLY
	default:
		wp.RecordExistsAction = as.UPDATE_ONLY
		wp.GenerationPolicy = as.EXPECT_GEN_EQUAL
		wp.Generation = r.Gen
	}
	return as.NewBatchWrite(wp, key, ops...), nil
}

// batchDelete turns a record with nil bins into a delete, which only
// AnyGen may ask for.
func (s *Store) batchDelete(r *sink.Record) (*as.BatchDelete, error) {
	if r.Gen != sink.AnyGen {
		return nil, errors.New("a delete (nil bins) needs Gen AnyGen")
	}
	key, err := s.key(r.Key)
	if err != nil {
		return nil, err
	}
	return as.NewBatchDelete(nil, key), nil
}

// expiration converts a TTL to Aerospike's: whole seconds, rounded up so a
// record never lives shorter than asked; 0 means never expire.
func expiration(ttl time.Duration) (uint32, error) {
	switch {
	case ttl == 0:
		return as.TTLDontExpire, nil
	case ttl < 0:
		return 0, fmt.Errorf("TTL %s is negative", ttl)
	}
	secs := (ttl + time.Second - 1) / time.Second
	if secs > maxTTL {
		return 0, fmt.Errorf("TTL %s is longer than Aerospike's maximum of %d seconds", ttl, maxTTL)
	}
	return uint32(secs), nil
}

// putResult gathers the outcome of a Put's records.
type putResult struct {
	total     int
	conflicts []sink.Key

	nUnavailable int
	firstUnavail error
	nFailed      int
	firstFailed  error
	noGen        []sink.Key
	tooBig       []sink.Key // over the namespace's max-record-size

	// A request that failed as a whole leaves its records unanswered and
	// the later ones unsent; stopErr says why.
	nUnanswered int
	nUnsent     int
	stopErr     error
}

// record takes one record's result: on success its new generation, as the
// server returned it in the record's reply.
func (p *putResult) record(r *sink.Record, br *as.BatchRecord) {
	switch rc := br.ResultCode; {
	case r.Bins == nil && (rc == types.OK || rc == types.KEY_NOT_FOUND_ERROR):
		r.Gen = 0 // deleted, or not there
	case rc == types.OK:
		if br.Record == nil || br.Record.Generation == 0 {
			p.noGen = append(p.noGen, r.Key)
			return
		}
		r.Gen = br.Record.Generation
	case rc == types.NO_RESPONSE:
		p.nUnanswered++
	case isConflict(rc):
		p.conflicts = append(p.conflicts, r.Key)
	case rc == types.RECORD_TOO_BIG:
		p.tooBig = append(p.tooBig, r.Key)
	case isUnavailableCode(rc):
		p.nUnavailable++
		if p.firstUnavail == nil {
			p.firstUnavail = fmt.Errorf("record %s: %w", r.Key, recordErr(br))
		}
	default:
		p.nFailed++
		if p.firstFailed == nil {
			p.firstFailed = fmt.Errorf("record %s: %w", r.Key, recordErr(br))
		}
	}
}

func recordErr(br *as.BatchRecord) error {
	if br.Err != nil {
		return br.Err
	}
	return errors.New(br.ResultCode.String())
}

// stop notes why the request failed as a whole and how many records were
// not sent after it.
func (p *putResult) stop(err error, unsent int) {
	p.stopErr = err
	p.nUnsent = unsent
}

func (p *putResult) err() error {
	var errs []error
	if p.nFailed > 0 {
		errs = append(errs, fmt.Errorf("aerospike put: %d of %d records failed (first: %w)", p.nFailed, p.total, p.firstFailed))
	}
	if len(p.noGen) > 0 {
		errs = append(errs, fmt.Errorf("aerospike put: %d of %d records were written but the server returned no generation (first: %s)", len(p.noGen), p.total, p.noGen[0]))
	}
	if p.nUnavailable > 0 {
		errs = append(errs, fmt.Errorf("aerospike put: %w: %d of %d records not confirmed (first: %w)", sink.ErrUnavailable, p.nUnavailable, p.total, p.firstUnavail))
	}
	if p.stopErr != nil {
		errs = append(errs, fmt.Errorf("aerospike put: %d of %d records unanswered and %d not sent: %w", p.nUnanswered, p.total, p.nUnsent, p.stopErr))
	} else if p.nUnanswered > 0 {
		errs = append(errs, fmt.Errorf("aerospike put: %w: %d of %d records unanswered", sink.ErrUnavailable, p.nUnanswered, p.total))
	}
	if len(p.conflicts) > 0 {
		errs = append(errs, &sink.ConflictError{Keys: p.conflicts})
	}
	if len(p.tooBig) > 0 {
		errs = append(errs, fmt.Errorf("aerospike put: %w (raise the namespace's max-record-size, or make the records smaller)", &sink.TooBigError{Keys: p.tooBig}))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

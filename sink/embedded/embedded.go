package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/sink/embedded/internal/codec"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Now is the clock used for TTLs; time.Now when nil.
	Now func() time.Time
	// NoSync skips fsync on commit. Only for benchmarks that measure
	// everything but the disk; a crash may then lose acknowledged writes.
	NoSync bool
	// MaxRecordBytes bounds one encoded record, as Aerospike's
	// max-record-size does, so that what runs on this store runs on
	// Aerospike; 0 means DefaultMaxRecordBytes.
	MaxRecordBytes int
}

// DefaultMaxRecordBytes is Aerospike's default max-record-size.
const DefaultMaxRecordBytes = 1 << 20

// Store is a sink store in one bbolt file.
type Store struct {
	db       *bolt.DB
	now      func() time.Time
	maxBytes int

	mu    sync.Mutex
	fault func(op string, recs []sink.Record) error
}

// Open opens (creating if needed) the store file at path.
func Open(path string, opts Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	maxBytes := opts.MaxRecordBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxRecordBytes
	}
	return &Store{db: db, now: now, maxBytes: maxBytes}, nil
}

// InjectFault installs f, called before every Get ("get") and Put ("put")
// with the records concerned; a non-nil result fails the call with that
// error before anything is read or written. Tests use it to simulate an
// unavailable store or a crash between two writes. nil removes it.
func (s *Store) InjectFault(f func(op string, recs []sink.Record) error) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

func (s *Store) checkFault(op string, recs []sink.Record) error {
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(op, recs)
}

// Atomic reports that Put writes all its records or none (one bbolt
// transaction), so a caller may put a checkpoint beside the data it covers.
func (s *Store) Atomic() bool { return true }

// Truncate removes every record of set, durably.
func (s *Store) Truncate(ctx context.Context, set string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(set)) == nil {
			return nil
		}
		return tx.DeleteBucket([]byte(set))
	})
	if err != nil {
		return fmt.Errorf("embedded store truncate %s: %w", set, err)
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Value layout: expiry (unix nanoseconds, 0 = never) | generation | bins.
const headerLen = 8 + 4

// Get reads the records named by keys, in that order; a missing or expired
// record comes back with Gen 0 and nil Bins.
func (s *Store) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]sink.Record, len(keys))
	for i, k := range keys {
		out[i].Key = k
	}
	if err := s.checkFault("get", out); err != nil {
		return nil, err
	}
	now := s.now().UnixNano()
	err := s.db.View(func(tx *bolt.Tx) error {
		for i, k := range keys {
			b := tx.Bucket([]byte(k.Set))
			if b == nil {
				continue
			}
			v := b.Get([]byte(k.ID))
			if v == nil {
				continue
			}
			exp, gen, bins, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("record %s: %w", k, err)
			}
			if exp != 0 && exp <= now {
				continue
			}
			out[i].Gen, out[i].Bins = gen, bins
			if exp != 0 {
				out[i].TTL = time.Duration(exp - now)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store get: %w", err)
	}
	return out, nil
}

// Put writes recs in one transaction. Every record's Gen must equal the
// stored generation (0 for a record that does not exist or has expired)
// or be sink.AnyGen; otherwise nothing is written and the error is a
// *sink.ConflictError. A record with nil Bins is deleted. A
// record that encodes to more than MaxRecordBytes fails the whole Put with
// a *sink.TooBigError. On success each record's Gen is the new generation.
func (s *Store) Put(ctx context.Context, recs []sink.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.checkFault("put", recs); err != nil {
		return err
	}
	now := s.now().UnixNano()
	gens := make([]uint32, len(recs))
	err := s.db.Update(func(tx *bolt.Tx) error {
		var conflict []sink.Key
		var tooBig *sink.TooBigError
		for i := range recs {
			r := &recs[i]
			b, err := tx.CreateBucketIfNotExists([]byte(r.Key.Set))
			if err != nil {
				return err
			}
			var cur uint32
			if v := b.Get([]byte(r.Key.ID)); v != nil {
				exp, gen, _, err := decodeHeader(v)
				if err != nil {
					return fmt.Errorf("record %s: %w", r.Key, err)
				}
				if exp == 0 || exp > now {
					cur = gen
				}
			}
			if r.Bins == nil {
				if r.Gen != sink.AnyGen {
					return fmt.Errorf("record %s: a delete (nil bins) needs Gen AnyGen", r.Key)
				}
				if err := b.Delete([]byte(r.Key.ID)); err != nil {
					return err
				}
				continue
			}
			if cur != r.Gen && r.Gen != sink.AnyGen {
				conflict = append(conflict, r.Key)
				continue
			}
			gens[i] = nextGen(cur)
			var exp int64
			if r.TTL > 0 {
				exp = now + int64(r.TTL)
			}
			v, err := encodeValue(exp, gens[i], r.Bins)
			if err != nil {
				return fmt.Errorf("record %s: %w", r.Key, err)
			}
			if len(v) > s.maxBytes {
				if tooBig == nil {
					tooBig = &sink.TooBigError{Bytes: len(v), Limit: s.maxBytes}
				}
				tooBig.Keys = append(tooBig.Keys, r.Key)
				continue
			}
			if err := b.Put([]byte(r.Key.ID), v); err != nil {
				return err
			}
		}
		if tooBig != nil { // retrying cannot help: said before any conflict
			return tooBig
		}
		if conflict != nil {
			return &sink.ConflictError{Keys: conflict}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, sink.ErrConflict) || errors.Is(err, sink.ErrTooBig) {
			return err
		}
		return fmt.Errorf("embedded store put: %w", err)
	}
	for i := range recs {
		recs[i].Gen = gens[i]
	}
	return nil
}

// nextGen mirrors Aerospike: generations count writes and never are 0.
func nextGen(g uint32) uint32 {
	if g == 0xffff {
		return 1
	}
	return g + 1
}

func encodeValue(exp int64, gen uint32, bins map[string]any) ([]byte, error) {
	v := make([]byte, headerLen, 64)
	binary.BigEndian.PutUint64(v, uint64(exp))
	binary.BigEndian.PutUint32(v[8:], gen)
	m := make(map[any]any, len(bins))
	for k, b := range bins {
		m[k] = b
	}
	return codec.Append(v, m)
}

func decodeHeader(v []byte) (exp int64, gen uint32, rest []byte, err error) {
	if len(v) < headerLen {
		return 0, 0, nil, errors.New("stored value is truncated")
	}
	return int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint32(v[8:]), v[headerLen:], nil
}

func decodeValue(v []byte) (int64, uint32, map[string]any, error) {
	exp, gen, rest, err := decodeHeader(v)
	if err != nil {
		return 0, 0, nil, err
	}
	d, _, err := codec.Decode(rest)
	if err != nil {
		return 0, 0, nil, err
	}
	m, ok := d.(map[any]any)
	if !ok {
		return 0, 0, nil, errors.New("stored bins are not a map")
	}
	bins := make(map[string]any, len(m))
	for k, b := range m {
		ks, ok := k.(string)
		if !ok {
			return 0, 0, nil, errors.New("stored bin name is not a string")
		}
		bins[ks] = b
	}
	return exp, gen, bins, nil
}

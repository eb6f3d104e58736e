// Package split stores records bigger than a store takes in one record
// (Aerospike's max-record-size, 1 MiB by default) as a head record and
// parts, so that no entity's state is ever too big to write.
//
// A record whose bins encode to more than Options.Bytes keeps its small
// bins in the head; its biggest byte-slice bins (tilefeed's tile blobs)
// are cut into parts at content-defined boundaries (a gear rolling hash, as
// in FastCDC), each part a record of its own keyed by the head's key and
// the part's SHA-256. The head names its parts in the bin "_parts".
//
// Parts are written before the head that names them, and a part is never
// changed once written (its key is its content), so:
//   - the head's generation-checked write stays the one atomic step that
//     makes a new state durable, as for a record that is not split: a crash
//     before it leaves the old head and its parts whole;
//   - a write sends only the parts the stored head does not have: a change
//     to one tile rewrites the parts around it, not the whole entity;
//   - parts the new head no longer names are deleted after it is written
//     (a crash in between leaves them unreferenced: space, not state).
//
// Reading a split record takes two batch round trips (the heads, then the
// parts of those that are split); a record that is not split reads as
// before.
package split

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tilefeed/tilefeed/internal/lru"
	"github.com/tilefeed/tilefeed/sink"
)

// Store is the store the parts and heads go to.
type Store interface {
	Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error)
	Put(ctx context.Context, recs []sink.Record) error
}

// Options tune a split Store.
type Options struct {
	// Bytes is the size (encoded, about) above which a record is split;
	// 0 means DefaultBytes.
	Bytes int
	// CacheBytes bounds the parts kept in memory for reads: a part never
	// changes, so a read of a split record whose parts are cached takes one
	// round trip, for its head. 0 means DefaultCacheBytes; below 0, none.
	CacheBytes int
}

// DefaultCacheBytes is the default bound of the part cache.
const DefaultCacheBytes = 32 << 20

// DefaultBytes leaves room under Aerospike's default max-record-size for
// the bins that stay in the head.
const DefaultBytes = 512 << 10

const (
	// binParts names a head's parts: bin name → list of part IDs.
	binParts = "_parts"
	// binPart holds a part's bytes.
	binPart = "p"
	// Part sizes: at most MaxPart bytes, at least a sixteenth of that (but
	// for a bin's last part); a boundary where the rolling hash's top bits
	// are zero, about every 64 KiB. Byte bins under a sixteenth of the
	// split size stay in the head. A split size under 512 KiB makes parts
	// at most half of it.
	MaxPart  = 256 << 10
	partMask = uint64(0xffff) << 48
	// rereads bounds how often Get reads a head again when one of its
	// parts is gone: a writer replaced the head and dropped the parts
	// between the two round trips.
	rereads = 3
)

// Split wraps a store so that big records are split.
type Split struct {
	inner Store
	bytes int
	// minSpill, minPart and maxPart follow from bytes (see MaxPart).
	minSpill, minPart, maxPart int

	cache *lru.Cache[sink.Key, []byte] // parts read or written

	mu sync.Mutex
	// known holds the parts of split heads as last read or written, by
	// generation: a Put that replaces that generation writes only new
	// parts and deletes the dropped ones.
	known map[sink.Key]headParts
}

type headParts struct {
	gen   uint32
	parts []string // part IDs, sorted
}

// New wraps inner.
func New(inner Store, opts Options) *Split {
	if opts.Bytes <= 0 {
		opts.Bytes = DefaultBytes
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	maxPart := min(MaxPart, opts.Bytes/2)
	return &Split{inner: inner, bytes: opts.Bytes, known: map[sink.Key]headParts{},
		minSpill: opts.Bytes / 16, minPart: maxPart / 16, maxPart: maxPart,
		cache: lru.New[sink.Key, []byte](opts.CacheBytes)}
}

// Inner returns the wrapped store.
func (s *Split) Inner() Store { return s.inner }

// Atomic reports what the wrapped store reports: a Put's heads are
// written in one Put of the wrapped store (its parts before, apart).
func (s *Split) Atomic() bool {
	a, ok := s.inner.(interface{ Atomic() bool })
	return ok && a.Atomic()
}

// Truncate empties a set of the wrapped store, parts included (they live
// in their head's set).
func (s *Split) Truncate(ctx context.Context, set string) error {
	tr, ok := s.inner.(interface {
		Truncate(ctx context.Context, set string) error
	})
	if !ok {
		return fmt.Errorf("the store cannot truncate set %s", set)
	}
	s.mu.Lock()
	for k := range s.known {
		if k.Set == set {
			delete(s.known, k)
		}
	}
	s.mu.Unlock()
	return tr.Truncate(ctx, set)
}

// Close closes the wrapped store.
func (s *Split) Close() error {
	if c, ok := s.inner.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// PartKey is the key of head's part id.
func PartKey(head sink.Key, id string) sink.Key {
	return sink.Key{Set: head.Set, ID: head.ID + "\x00" + id}
}

// joinedKey names, in the part cache, a bin joined from its parts.
func joinedKey(head sink.Key, bin string, ids []string) sink.Key {
	return sink.Key{Set: head.Set, ID: head.ID + "\x00" + bin + "\x00" + strings.Join(ids, ",")}
}

// Get reads keys as the wrapped store does, a split record whole. The
// byte bins of a split record may be shared with other reads of it: a
// caller must not write to them.
func (s *Split) Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error) {
	recs, err := s.inner.Get(ctx, keys)
	if err != nil {
		return nil, err
	}
	pending := make([]int, 0)
	for i := range recs {
		if _, ok := recs[i].Bins[binParts]; ok {
			pending = append(pending, i)
		} else {
			s.forget(recs[i].Key)
		}
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		missing, err := s.join(ctx, recs, pending)
		if err != nil {
			return nil, err
		}
		if len(missing) == 0 {
			break
		}
		if attempt == rereads {
			i := missing[0]
			return nil, fmt.Errorf("record %s (generation %d) names parts that are not in the store", recs[i].Key, recs[i].Gen)
		}
		again := make([]sink.Key, len(missing))
		for j, i := range missing {
			again[j] = keys[i]
		}
		heads, err := s.inner.Get(ctx, again)
		if err != nil {
			return nil, err
		}
		pending = pending[:0]
		for j, i := range missing {
			recs[i] = heads[j]
			if _, ok := heads[j].Bins[binParts]; ok {
				pending = append(pending, i)
			}
		}
	}
	return recs, nil
}

// join reads the parts of the heads recs[pending] and puts their bins
// back together; it returns the heads some of whose parts are gone.
func (s *Split) join(ctx context.Context, recs []sink.Record, pending []int) (missing []int, err error) {
	type ref struct {
		rec  int
		bin  string
		part int
	}
	var keys []sink.Key
	var refs []ref
	lists := make(map[int]map[string][]string, len(pending))
	// A bin joined before is taken whole from the cache: a read of an
	// unchanged record copies nothing.
	joined := map[int]map[string][]byte{}
	for _, i := range pending {
		m, err := partList(recs[i].Bins[binParts])
		if err != nil {
			return nil, fmt.Errorf("record %s: bin %s: %w", recs[i].Key, binParts, err)
		}
		lists[i] = m
		for bin, ids := range m {
			if b, ok := s.cache.Get(joinedKey(recs[i].Key, bin, ids)); ok {
				if joined[i] == nil {
					joined[i] = map[string][]byte{}
				}
				joined[i][bin] = b
				continue
			}
			for p, id := range ids {
				keys = append(keys, PartKey(recs[i].Key, id))
				refs = append(refs, ref{i, bin, p})
			}
		}
	}
	// Parts are read from the cache, or else from the store in one batch.
	blobs := make([][]byte, len(keys))
	var fetch []sink.Key
	var at []int
	for j, k := range keys {
		if b, ok := s.cache.Get(k); ok {
			blobs[j] = b
		} else {
			fetch = append(fetch, k)
			at = append(at, j)
		}
	}
	if len(fetch) > 0 {
		parts, err := s.inner.Get(ctx, fetch)
		if err != nil {
			return nil, err
		}
		for n, p := range parts {
			if b, ok := p.Bins[binPart].([]byte); ok && p.Gen != 0 {
				blobs[at[n]] = b
				s.cache.Put(p.Key, b, len(b)+len(p.Key.ID))
			}
		}
	}
	got := make(map[int]map[string][][]byte, len(pending))
	gone := map[int]bool{}
	for j, b := range blobs {
		r := refs[j]
		if b == nil {
			gone[r.rec] = true
			continue
		}
		if got[r.rec] == nil {
			got[r.rec] = map[string][][]byte{}
		}
		bin := got[r.rec][r.bin]
		if bin == nil {
			bin = make([][]byte, len(lists[r.rec][r.bin]))
			got[r.rec][r.bin] = bin
		}
		bin[r.part] = b
	}
	for _, i := range pending {
		if gone[i] {
			missing = append(missing, i)
			continue
		}
		bins := make(map[string]any, len(recs[i].Bins)+len(lists[i]))
		for k, v := range recs[i].Bins {
			if k != binParts {
				bins[k] = v
			}
		}
		var ids []string
		for bin, ids2 := range lists[i] {
			b, ok := joined[i][bin]
			if !ok {
				b = slices.Concat(got[i][bin]...)
				jk := joinedKey(recs[i].Key, bin, ids2)
				s.cache.Put(jk, b, len(b)+len(jk.ID))
			}
			bins[bin] = b // shared with the cache: never written to
			ids = append(ids, ids2...)
		}
		s.remember(recs[i].Key, recs[i].Gen, ids)
		recs[i].Bins = bins
	}
	return missing, nil
}

func partList(v any) (map[string][]string, error) {
	m, ok := v.(map[any]any)
	if !ok {
		return nil, errors.New("not a map of part lists")
	}
	out := make(map[string][]string, len(m))
	for k, l := range m {
		bin, _ := k.(string)
		list, ok := l.([]any)
		if bin == "" || !ok {
			return nil, fmt.Errorf("entry %v is not a bin's part list", k)
		}
		ids := make([]string, len(list))
		for i, e := range list {
			if ids[i], ok = e.(string); !ok {
				return nil, fmt.Errorf("bin %s: part %d is not an ID", bin, i)
			}
		}
		out[bin] = ids
	}
	return out, nil
}

func (s *Split) remember(k sink.Key, gen uint32, ids []string) {
	slices.Sort(ids)
	s.mu.Lock()
	s.known[k] = headParts{gen: gen, parts: slices.Compact(ids)}
	s.mu.Unlock()
}

func (s *Split) forget(k sink.Key) {
	s.mu.Lock()
	delete(s.known, k)
	s.mu.Unlock()
}

// stored returns the parts of the head a write of r replaces, when known:
// those of the head of generation r.Gen, or for a delete (which replaces
// whatever is stored) those last seen.
func (s *Split) stored(r *sink.Record) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hp, ok := s.known[r.Key]
	if r.Bins == nil && r.Gen == sink.AnyGen {
		return hp.parts, ok
	}
	if !ok || hp.gen != r.Gen || r.Gen == 0 || r.Gen == sink.AnyGen {
		return nil, false
	}
	return hp.parts, true
}

// Put writes recs as the wrapped store does, splitting those over
// Options.Bytes: first the parts the stored heads lack, then the heads (one
// Put of the wrapped store, with every record's generation check), then
// the deletes of parts no head names any more. On success each record's
// Gen is its head's new generation.
func (s *Split) Put(ctx context.Context, recs []sink.Record) error {
	heads := make([]sink.Record, len(recs))
	var parts, drop []sink.Record
	newParts := make([][]string, len(recs))
	split := false
	for i := range recs {
		r := recs[i]
		heads[i] = r
		old, known := s.stored(&r)
		if r.Bins == nil || estimate(r.Bins) <= s.bytes {
			if known {
				drop = appendDrops(drop, r.Key, old, nil)
			}
			continue
		}
		bins, ids, ps := s.cut(r, old)
		if ids == nil {
			continue // nothing to cut: the wrapped store judges the size
		}
		split = true
		heads[i].Bins = bins
		newParts[i] = ids
		parts = append(parts, ps...)
		if known {
			drop = appendDrops(drop, r.Key, old, ids)
		}
	}
	if len(parts) > 0 {
		if err := s.inner.Put(ctx, parts); err != nil {
			return fmt.Errorf("write %d parts of split records: %w", len(parts), err)
		}
	}
	err := s.inner.Put(ctx, heads)
	for i := range recs {
		recs[i].Gen = heads[i].Gen
	}
	if err != nil {
		if split || len(drop) > 0 {
			for i := range recs {
				s.forget(recs[i].Key) // whether the head landed is not known
			}
		}
		return err
	}
	for i := range recs {
		if newParts[i] != nil {
			s.remember(recs[i].Key, recs[i].Gen, slices.Clone(newParts[i]))
		} else {
			s.forget(recs[i].Key)
		}
	}
	for _, p := range parts {
		b := p.Bins[binPart].([]byte)
		s.cache.Put(p.Key, b, len(b)+len(p.Key.ID))
	}
	if len(drop) > 0 {
		for _, d := range drop {
			s.cache.Remove(d.Key)
		}
		// Best effort: a part left behind takes space but no head names it.
		_ = s.inner.Put(ctx, drop)
	}
	return nil
}

// cut moves r's biggest byte bins into parts until the head is under the
// limit. It returns the head's bins, its part IDs (sorted, unique; nil when
// no bin is big enough to move) and the part records to write: those not
// among old, the stored head's parts. A record with a TTL rewrites all its
// parts, so that none expires before its head.
func (s *Split) cut(r sink.Record, old []string) (map[string]any, []string, []sink.Record) {
	type blob struct {
		name string
		b    []byte
	}
	var blobs []blob
	for name, v := range r.Bins {
		if b, ok := v.([]byte); ok && len(b) >= s.minSpill {
			blobs = append(blobs, blob{name, b})
		}
	}
	if len(blobs) == 0 {
		return nil, nil, nil
	}
	slices.SortFunc(blobs, func(a, b blob) int {
		if len(a.b) != len(b.b) {
			return len(b.b) - len(a.b)
		}
		return strings.Compare(a.name, b.name)
	})
	bins := make(map[string]any, len(r.Bins)+1)
	for k, v := range r.Bins {
		bins[k] = v
	}
	lists := map[any]any{}
	var ids []string
	var recs []sink.Record
	size := estimate(r.Bins)
	for _, bl := range blobs {
		if size <= s.bytes {
			break
		}
		var list []any
		for _, p := range s.cutPoints(bl.b) {
			sum := sha256.Sum256(p)
			id := hex.EncodeToString(sum[:16])
			list = append(list, id)
			if _, have := slices.BinarySearch(old, id); (!have || r.TTL > 0) && !slices.Contains(ids, id) {
				recs = append(recs, sink.Record{Key: PartKey(r.Key, id), Gen: sink.AnyGen, TTL: r.TTL,
					Bins: map[string]any{binPart: p}})
			}
			ids = append(ids, id)
		}
		lists[bl.name] = list
		delete(bins, bl.name)
		size -= len(bl.b) - 40*len(list)
	}
	bins[binParts] = lists
	slices.Sort(ids)
	return bins, slices.Compact(ids), recs
}

// appendDrops adds deletes of the parts in old (sorted) that are not in
// now (sorted).
func appendDrops(drop []sink.Record, head sink.Key, old, now []string) []sink.Record {
	for _, id := range old {
		if _, keep := slices.BinarySearch(now, id); !keep {
			drop = append(drop, sink.Record{Key: PartKey(head, id), Gen: sink.AnyGen})
		}
	}
	return drop
}

// cutPoints cuts b into parts at content-defined boundaries, so an
// insertion or a removal moves the boundaries near it only.
func (s *Split) cutPoints(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := s.boundary(b)
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out
}

func (s *Split) boundary(b []byte) int {
	if len(b) <= s.minPart {
		return len(b)
	}
	end := min(len(b), s.maxPart)
	var h uint64
	for i := s.minPart; i < end; i++ {
		h = h<<1 + gear[b[i]]
		if h&partMask == 0 {
			return i + 1
		}
	}
	return end
}

// gear is the rolling hash's table: fixed pseudo-random numbers
// (splitmix64), so the same bytes always cut the same way.
var gear = func() (t [256]uint64) {
	x := uint64(0x7469_6c65_6665_6564) // "tilefeed"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		t[i] = z ^ z>>31
	}
	return t
}()

// estimate is about how many bytes bins take encoded.
func estimate(bins map[string]any) int {
	n := 0
	for k, v := range bins {
		n += len(k) + 4 + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 4
	case []byte:
		return len(x) + 4
	case []any:
		n := 4
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	case map[any]any:
		n := 4
		for k, e := range x {
			n += valueSize(k) + valueSize(e)
		}
		return n
	}
	return 9
}

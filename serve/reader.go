package serve

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tilefeed/tilefeed/internal/lru"
	"github.com/tilefeed/tilefeed/sink"
	"github.com/tilefeed/tilefeed/transform"
)

// Getter reads records; every sink store is one.
type Getter interface {
	Get(ctx context.Context, keys []sink.Key) ([]sink.Record, error)
}

// Reader computes features from the stored records.
type Reader struct {
	Engine *transform.Engine
	Store  Getter
	// Cache, when set, keeps decoded records and what was computed from
	// them (NewCache).
	Cache *Cache
}

// Cache keeps the records a Reader decoded, each with its read memo
// (transform.Memo), bounded by their size in memory. A record read again
// unchanged (the same generation, position and commit time) is neither
// decoded nor aggregated again for a read time in the same tile.
type Cache struct {
	lru *lru.Cache[sink.Key, *cached]
}

// NewCache returns a cache of at most maxBytes (transform.State.MemSize).
func NewCache(maxBytes int) *Cache {
	return &Cache{lru: lru.New[sink.Key, *cached](maxBytes)}
}

type cached struct {
	version version
	state   *transform.State
	memo    *transform.Memo
}

// version tells one stored version of a record from another: a write
// changes its generation, and a store that lost its records (a truncated
// set, a restarted Aerospike) gives generations again, but not with the
// same position and commit time of the last change applied.
type version struct {
	gen               uint32
	lsn, ord, seq, ts int64
}

func versionOf(rec *sink.Record) version {
	v := version{gen: rec.Gen}
	v.lsn, _ = rec.Bins["_lsn"].(int64)
	v.ord, _ = rec.Bins["_ord"].(int64)
	v.seq, _ = rec.Bins["_seq"].(int64)
	v.ts, _ = rec.Bins["_ts"].(int64)
	return v
}

// decode returns rec decoded and its memo, from the cache when it holds
// this version.
func (c *Cache) decode(rec *sink.Record) (*transform.State, *transform.Memo, error) {
	if c == nil {
		st, err := transform.DecodeState(rec.Bins)
		return st, nil, err
	}
	v := versionOf(rec)
	if e, ok := c.lru.Get(rec.Key); ok && e.version == v {
		return e.state, e.memo, nil
	}
	st, err := transform.DecodeState(rec.Bins)
	if err != nil {
		c.lru.Remove(rec.Key)
		return nil, nil, err
	}
	e := &cached{version: v, state: st, memo: &transform.Memo{}}
	c.lru.Put(rec.Key, e, st.MemSize())
	return st, e.memo, nil
}

// Entity is one entity's features as of a read time.
type Entity struct {
	Group string            `json:"group"`
	Key   map[string]string `json:"entity"`
	Found bool              `json:"found"`
	At    time.Time         `json:"as_of"`
	// UpdatedAt is the commit time of the last change applied to the
	// entity: how fresh the features are.
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Position is the source position of the last change applied; a
	// source of several streams (Kafka partitions) has one per stream in
	// Positions instead.
	Position  string              `json:"position,omitempty"`
	Positions map[string]string   `json:"positions,omitempty"`
	Features  []transform.Feature `json:"-"`
}

// ErrUnknownGroup is returned for a group the connector does not define.
type ErrUnknownGroup struct{ Group string }

func (e ErrUnknownGroup) Error() string { return fmt.Sprintf("no feature group %q", e.Group) }

// Read returns the features of the entities keyed by keys (each a value
// per entity column, in the group's order) as of at, from every change
// applied (a read at now: docs/point-in-time.md).
func (r *Reader) Read(ctx context.Context, group string, keys [][]string, at time.Time) ([]Entity, error) {
	return r.ReadQuery(ctx, group, keys, Query{At: at})
}

// Query is what a read asks for beyond the group and the keys.
type Query struct {
	At time.Time
	// AsOf makes the read exact as of At (docs/point-in-time.md): only
	// the changes with an event time at or before At count, and a feature
	// the store cannot answer so fails the read with a
	// *transform.AsOfError. Now is the reader's clock: At at or after it
	// reads as at now, and it says whether a missing record may have
	// expired.
	AsOf bool
	Now  time.Time
	// Features names the features wanted; all when empty.
	Features []string
}

// ReadQuery reads the entities keyed by keys as q says.
func (r *Reader) ReadQuery(ctx context.Context, group string, keys [][]string, q Query) ([]Entity, error) {
	if q.AsOf && q.Now.IsZero() {
		q.Now = time.Now()
	}
	if q.AsOf && !q.At.Before(q.Now) {
		// Nothing has happened after an instant not yet past: a read as of
		// it is a read at now (docs/point-in-time.md).
		q.AsOf = false
	}
	g := r.Engine.Group(group)
	if g == nil {
		return nil, ErrUnknownGroup{group}
	}
	for _, name := range q.Features {
		if !slices.Contains(g.FeatureNames(), name) {
			return nil, &UnknownFeatureError{Group: group, Feature: name, Known: g.FeatureNames()}
		}
	}
	sk := make([]sink.Key, len(keys))
	for i, k := range keys {
		if len(k) != len(g.Entity) {
			return nil, fmt.Errorf("group %s is keyed by %v; got %d values", group, g.Entity, len(k))
		}
		if err := g.CheckKey(k); err != nil {
			return nil, err
		}
		sk[i] = sink.Key{Set: g.Name, ID: transform.EntityID(k)}
	}
	recs, err := r.Store.Get(ctx, sk)
	if err != nil {
		return nil, fmt.Errorf("read features: %w", err)
	}
	out := make([]Entity, len(keys))
	for i, rec := range recs {
		st, memo, err := r.Cache.decode(&rec)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		e := Entity{Group: group, Key: map[string]string{}, At: q.At, Found: rec.Gen != 0 && !st.IsEmpty()}
		for j, col := range g.Entity {
			e.Key[col] = keys[i][j]
		}
		if e.Found {
			u := time.UnixMicro(st.Updated).UTC()
			e.UpdatedAt = &u
			if len(st.Streams) == 0 || !st.Pos.IsZero() {
				e.Position = st.Pos.String()
			}
			for name, p := range st.Streams {
				if e.Positions == nil {
					e.Positions = make(map[string]string, len(st.Streams))
				}
				e.Positions[name] = p.String()
			}
		}
		if !q.AsOf {
			e.Features = filterFeatures(g.ReadMemo(st, q.At, memo), q.Features)
			out[i] = e
			continue
		}
		if rec.Gen == 0 {
			if err := g.CheckMissingAsOf(q.At, q.Now); err != nil {
				return nil, entityError(e, err)
			}
		}
		if e.Features, err = g.ReadAsOf(st, q.At, memo, q.Features); err != nil {
			return nil, entityError(e, err)
		}
		out[i] = e
	}
	return out, nil
}

// entityError names the entity in an as-of refusal.
func entityError(e Entity, err error) error {
	if ae, ok := err.(*transform.AsOfError); ok {
		return &AsOfError{AsOfError: ae, Entity: e.Key}
	}
	return err
}

// AsOfError is a refused as-of read of one entity.
type AsOfError struct {
	*transform.AsOfError
	Entity map[string]string
}

func (e *AsOfError) Unwrap() error { return e.AsOfError }

// JSON is the body of the read API's 422 answer.
func (e *AsOfError) JSON() map[string]any {
	m := map[string]any{"error": e.Error(), "group": e.Group, "entity": e.Entity, "feature": e.Feature, "at": e.At}
	if !e.From.IsZero() {
		m["answerable_from"] = e.From.UTC()
	}
	if !e.Before.IsZero() {
		m["answerable_before"] = e.Before.UTC()
	}
	return m
}

// UnknownFeatureError names a feature the group does not have.
type UnknownFeatureError struct {
	Group, Feature string
	Known          []string
}

func (e *UnknownFeatureError) Error() string {
	return fmt.Sprintf("group %s has no feature %q (it has %s)", e.Group, e.Feature, strings.Join(e.Known, ", "))
}

func filterFeatures(all []transform.Feature, names []string) []transform.Feature {
	if len(names) == 0 {
		return all
	}
	out := all[:0]
	for _, f := range all {
		if slices.Contains(names, f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// JSON renders the entity as the read API and `tilefeed get` show it.
func (e Entity) JSON() map[string]any {
	m := map[string]any{"group": e.Group, "entity": e.Key, "found": e.Found, "as_of": e.At,
		"updated_at": e.UpdatedAt, "features": e.FeatureMap()}
	if e.Position != "" {
		m["position"] = e.Position
	}
	if e.Positions != nil {
		m["positions"] = e.Positions
	}
	return m
}

// FeatureMap renders an entity's features for JSON.
func (e Entity) FeatureMap() map[string]any {
	m := make(map[string]any, len(e.Features))
	for _, f := range e.Features {
		m[f.Name] = transform.JSONValue(f.Value)
	}
	return m
}

package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tilefeed/tilefeed/transform"
)

// Handler serves the HTTP API.
type Handler struct {
	reader *Reader
	// Status returns the runtime's status (JSON-encodable, no secrets).
	status func() any
	// ready returns nil when tilefeed can serve, else why not.
	ready func() error
	now   func() time.Time
	mux   *http.ServeMux
}

// NewHandler wires the endpoints.
func NewHandler(reader *Reader, gatherer prometheus.Gatherer, status func() any, ready func() error) *Handler {
	h := &Handler{reader: reader, status: status, ready: ready, now: time.Now, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	h.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, h.status())
	})
	h.mux.HandleFunc("GET /v1/features/{group}", h.getFeatures)
	h.mux.HandleFunc("POST /v1/get-online-features", h.getOnlineFeatures)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Handle serves pattern with handler too (the HTTP source's endpoint).
func (h *Handler) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := h.ready(); err != nil {
		// reasons lists each cause of an errors.Join apart; reason has them all.
		reasons := []string{err.Error()}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			reasons = reasons[:0]
			for _, e := range j.Unwrap() {
				reasons = append(reasons, e.Error())
			}
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": strings.Join(reasons, "; "), "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]any{"error": err.Error()})
}

// readTime parses the optional "at" parameter (RFC 3339); now otherwise.
func (h *Handler) readTime(v string) (time.Time, error) {
	if v == "" {
		return h.now(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("at=%q is not an RFC 3339 time", v)
	}
	return t, nil
}

// getFeatures serves GET /v1/features/{group}?<entity column>=<value>…[&at=…].
func (h *Handler) getFeatures(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	g := h.reader.Engine.Group(group)
	if g == nil {
		writeError(w, http.StatusNotFound, ErrUnknownGroup{group})
		return
	}
	q := r.URL.Query()
	at, err := h.readTime(q.Get("at"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	query := Query{At: at, AsOf: q.Get("at") != "", Now: h.now()}
	if v := q.Get("features"); v != "" {
		query.Features = strings.Split(v, ",")
	}
	key := make([]string, len(g.Entity))
	for i, col := range g.Entity {
		if !q.Has(col) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("missing entity column %q (group %s is keyed by %s)", col, group, strings.Join(g.Entity, ", ")))
			return
		}
		key[i] = q.Get(col)
	}
	ents, err := h.reader.ReadQuery(r.Context(), group, [][]string{key}, query)
	if err != nil {
		writeReadError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ents[0].JSON())
}

// writeReadError answers a failed read: 422 with what can be answered
// for an as-of read the store cannot answer exactly, 400 for a key no
// entity can have or a feature the group lacks, 503 for a store that did
// not answer.
func writeReadError(w http.ResponseWriter, err error) {
	var ae *AsOfError
	if errors.As(err, &ae) {
		writeJSON(w, http.StatusUnprocessableEntity, ae.JSON())
		return
	}
	var ke *transform.KeyError
	var fe *UnknownFeatureError
	if errors.As(err, &ke) || errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeError(w, http.StatusServiceUnavailable, err)
}

// onlineRequest is shaped like Feast's get_online_features request.
type onlineRequest struct {
	Features []string            `json:"features"` // "group:feature"
	Entities map[string][]string `json:"entities"` // column → one value per entity row
	At       string              `json:"at,omitempty"`
}

type onlineResult struct {
	Values          []any    `json:"values"`
	Statuses        []string `json:"statuses"`
	EventTimestamps []any    `json:"event_timestamps"`
}

// getOnlineFeatures serves a Feast-shaped batch read: requested features
// and entity rows in, one result column per entity column and feature out,
// each value with a status (PRESENT, NULL_VALUE, NOT_FOUND).
func (h *Handler) getOnlineFeatures(w http.ResponseWriter, r *http.Request) {
	var req onlineRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	at, err := h.readTime(req.At)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rows := -1
	for col, vals := range req.Entities {
		if rows >= 0 && len(vals) != rows {
			writeError(w, http.StatusBadRequest, fmt.Errorf("entity column %q has %d values, others %d", col, len(vals), rows))
			return
		}
		rows = len(vals)
	}
	if rows <= 0 || len(req.Features) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("want features and at least one entity row"))
		return
	}
	type ref struct{ group, feature string }
	refs := make([]ref, len(req.Features))
	byGroup := map[string]map[string]any{}
	for i, f := range req.Features {
		g, name, ok := strings.Cut(f, ":")
		grp := h.reader.Engine.Group(g)
		if !ok || grp == nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("feature %q: want group:feature with a known group", f))
			return
		}
		refs[i] = ref{g, name}
		byGroup[g] = nil
	}
	results := map[string][]Entity{}
	for g := range byGroup {
		grp := h.reader.Engine.Group(g)
		keys := make([][]string, rows)
		for i := range keys {
			keys[i] = make([]string, len(grp.Entity))
			for j, col := range grp.Entity {
				vals, ok := req.Entities[col]
				if !ok {
					writeError(w, http.StatusBadRequest, fmt.Errorf("group %s needs entity column %q", g, col))
					return
				}
				keys[i][j] = vals[i]
			}
		}
		query := Query{At: at, AsOf: req.At != "", Now: h.now()}
		if query.AsOf {
			// Only the features asked for must be answerable.
			for _, f := range refs {
				if f.group == g && slices.Contains(grp.FeatureNames(), f.feature) {
					query.Features = append(query.Features, f.feature)
				}
			}
			if len(query.Features) == 0 {
				query.AsOf = false // nothing of the group is served
			}
		}
		ents, err := h.reader.ReadQuery(r.Context(), g, keys, query)
		if err != nil {
			writeReadError(w, err)
			return
		}
		results[g] = ents
	}
	names := []string{}
	var out []onlineResult
	cols := make([]string, 0, len(req.Entities))
	for col := range req.Entities {
		cols = append(cols, col)
	}
	sort.Strings(cols)
	for _, col := range cols {
		vals := req.Entities[col]
		names = append(names, col)
		res := onlineResult{}
		for _, v := range vals {
			res.Values = append(res.Values, v)
			res.Statuses = append(res.Statuses, "PRESENT")
			res.EventTimestamps = append(res.EventTimestamps, nil)
		}
		out = append(out, res)
	}
	for _, f := range refs {
		names = append(names, f.group+":"+f.feature)
		res := onlineResult{}
		for _, e := range results[f.group] {
			val, found := any(nil), false
			for _, feat := range e.Features {
				if feat.Name == f.feature {
					val, found = feat.Value, true
				}
			}
			status := "PRESENT"
			switch {
			case !found:
				status = "NOT_FOUND"
			case !e.Found:
				status, val = "NOT_FOUND", nil
			case val == nil:
				status = "NULL_VALUE"
			}
			var ts any
			if e.UpdatedAt != nil {
				ts = e.UpdatedAt
			}
			res.Values = append(res.Values, transform.JSONValue(val))
			res.Statuses = append(res.Statuses, status)
			res.EventTimestamps = append(res.EventTimestamps, ts)
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{"metadata": map[string]any{"feature_names": names}, "results": out})
}

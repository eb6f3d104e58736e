package debezium

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tilefeed/tilefeed/change"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/decode"
)

// MaxRequestBytes bounds the body of one request to the HTTP source.
const MaxRequestBytes = 256 << 20

// HTTP is the endpoint Debezium Server's http sink posts change events to
// (debezium.sink.type=http): one record value per request, or a JSON
// array of them when debezium.sink.http.batch.enabled is on; the body's
// Content-Type says its format (application/json, or avro/bytes for one
// Confluent-framed Avro value). X-DEBEZIUM-* headers are accepted and not
// needed: the value holds everything.
//
// A request is answered 200 only once every change in it is durable in
// the sink, and 503 when that does not happen within the wait (the sink is
// down, tilefeed is stopping), so Debezium Server retries it. Requests are
// taken one at a time, in the order they arrive, as Debezium Server sends
// them. A retried request is idempotent: its changes take the positions
// they took the first time (from their source blocks; snapshot rows from
// the order they come in, counted from the base the request started at)
// and whatever of it is durable already is skipped. The digest of the
// last durable request is kept in the checkpoint, so the request whose
// answer a crash lost is recognized when it comes again after the
// restart, snapshot rows and all.
type HTTP struct {
	dec  *decode.Debezium
	log  *slog.Logger
	wait time.Duration

	mu   sync.Mutex // one request at a time
	conv *Converter

	state sync.Mutex
	out   chan<- change.Event
	ctx   context.Context
	done  string        // id of the last request durable whole
	ackCh chan struct{} // closed and replaced on every Ack
}

// NewHTTP returns the endpoint. wait bounds how long a request waits for
// durability before it is answered 503 (Debezium Server's default client
// timeout is 60 s; keep below it).
func NewHTTP(dec *decode.Debezium, log *slog.Logger, wait time.Duration) *HTTP {
	if wait <= 0 {
		wait = 30 * time.Second
	}
	return &HTTP{dec: dec, log: log, wait: wait, ackCh: make(chan struct{})}
}

// Stream serves requests until ctx ends.
func (h *HTTP) Stream(ctx context.Context, from connector.Checkpoint, out chan<- change.Event) error {
	h.mu.Lock()
	// A request may have been made durable in part before a crash, and it
	// comes again whole: number its changes from where the last whole
	// request ended, as the first time, not from the checkpoint's position.
	_, base := parseMarker(from.Marker)
	h.conv = NewConverter(base)
	h.mu.Unlock()
	h.state.Lock()
	h.out, h.ctx, h.done = out, ctx, from.Marker
	h.state.Unlock()
	<-ctx.Done()
	h.state.Lock()
	h.out, h.ctx = nil, nil
	h.state.Unlock()
	return ctx.Err()
}

// Ack releases the requests whose changes cp covers.
func (h *HTTP) Ack(cp connector.Checkpoint) {
	h.state.Lock()
	defer h.state.Unlock()
	if cp.Marker != h.done {
		h.done = cp.Marker
		close(h.ackCh)
		h.ackCh = make(chan struct{})
	}
}

// ServeHTTP takes one request of change events.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST Debezium change events here", http.StatusMethodNotAllowed)
		return
	}
	format, err := contentFormat(r.Header.Get("Content-Type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	values, err := splitBody(format, body)
	if err != nil {
		// Not even the framing holds: no record can be told from another.
		// Debezium Server would send it again and again, so the error
		// policy applies to the whole body as one record.
		values = [][]byte{body}
	}
	code, msg := h.take(r.Context(), format, body, values, err)
	if code != http.StatusOK {
		http.Error(w, msg, code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"records\":%d}\n", len(values))
}

// take converts a request's records, hands them to the runtime and waits
// until they are durable.
func (h *HTTP) take(ctx context.Context, format Format, body []byte, values [][]byte, splitErr error) (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state.Lock()
	out, srcCtx := h.out, h.ctx
	h.state.Unlock()
	if out == nil || h.conv == nil {
		return http.StatusServiceUnavailable, "tilefeed is not streaming yet"
	}
	sum := sha256.Sum256(body)
	reqID := "http:" + hex.EncodeToString(sum[:12])
	h.state.Lock()
	lastID, _ := parseMarker(h.done)
	again := lastID == reqID
	h.state.Unlock()
	if again {
		// The last request made durable, sent again because its answer
		// was lost (tilefeed stopped before it could answer). Its rows
		// must not be applied twice: snapshot rows carry no position of
		// their own to be recognized by.
		return http.StatusOK, ""
	}
	base := h.conv.Last()
	events := make([]change.Event, 0, len(values))
	dec := decodeFunc(h.dec.DecodeJSON)
	if format == Avro {
		dec = h.dec.DecodeAvro
	}
	for i, v := range values {
		origin := reqID + "#" + strconv.Itoa(i)
		if splitErr != nil {
			events = append(events, Invalid(origin, v, splitErr))
			continue
		}
		// Debezium Server posts values only; the key is not needed.
		if ev, ok := record(dec, h.conv, origin, nil, v); ok {
			events = append(events, ev)
		}
	}
	// The request's last event carries its id and end position, so the
	// checkpoint that covers the end of the request names it, in the same
	// write.
	if len(events) == 0 {
		events = append(events, change.Event{Op: change.Heartbeat})
	}
	marker := reqID + "@" + formatPos(h.conv.Last())
	events[len(events)-1].Marker = marker

	wait, cancel := context.WithTimeout(ctx, h.wait)
	defer cancel()
	for _, ev := range events {
		select {
		case out <- ev:
			continue
		case <-wait.Done():
		case <-srcCtx.Done():
		}
		// Part of the request may be applied; a retry takes the same
		// positions again, and the runtime skips what is durable.
		h.conv.Reset(base)
		return http.StatusServiceUnavailable, "tilefeed is busy or stopping: retry"
	}
	for {
		h.state.Lock()
		done, ch := h.done, h.ackCh
		h.state.Unlock()
		if done == marker {
			return http.StatusOK, ""
		}
		select {
		case <-ch:
		case <-wait.Done():
			h.log.Warn("request not durable in time; answering 503 so that Debezium Server retries", "request", reqID, "wait", h.wait)
			// The events were sent and may still become durable; the retry
			// takes the same positions and is skipped where durable.
			h.conv.Reset(base)
			return http.StatusServiceUnavailable, "changes not durable yet: retry"
		case <-srcCtx.Done():
			h.conv.Reset(base)
			return http.StatusServiceUnavailable, "tilefeed is stopping: retry"
		}
	}
}

// A marker names a request and the position its changes end at:
// "http:<digest>@<lsn>/<seq>/<ordinal>".
func formatPos(p change.Position) string {
	return fmt.Sprintf("%d/%d/%d", p.LSN, p.Seq, p.Ordinal)
}

func parseMarker(m string) (id string, end change.Position) {
	id, pos, ok := strings.Cut(m, "@")
	if !ok {
		return m, end
	}
	if _, err := fmt.Sscanf(pos, "%d/%d/%d", &end.LSN, &end.Seq, &end.Ordinal); err != nil {
		return id, change.Position{}
	}
	return id, end
}

func contentFormat(ct string) (Format, error) {
	if ct == "" {
		return JSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return JSON, fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	switch mt {
	case "application/json", "text/plain":
		return JSON, nil
	case "avro/bytes", "application/avro", "application/octet-stream":
		return Avro, nil
	case "application/cloudevents+json":
		return JSON, fmt.Errorf("Content-Type %s: CloudEvents are not read; set debezium.format.value=json (or avro)", mt)
	}
	return JSON, fmt.Errorf("Content-Type %q: want application/json or avro/bytes", ct)
}

// splitBody returns the record values of a body: the elements of a JSON
// array (batching on), or the body itself.
func splitBody(format Format, body []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if format == Avro || len(trimmed) == 0 || trimmed[0] != '[' {
		return [][]byte{body}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(trimmed, &items); err != nil {
		return nil, fmt.Errorf("body is not a JSON array of records: %v", err)
	}
	out := make([][]byte, len(items))
	for i := range items {
		out[i] = items[i]
	}
	return out, nil
}

// Package serve is tilefeed's one HTTP listener: /healthz, /readyz,
// /metrics, /v1/status and the feature read API, plus the Reader that
// computes features from stored records as of a given time (used by the
// HTTP API and by `tilefeed get`).
package serve

//go:build race

package transform

// raceEnabled shrinks the property tests under the race detector, which
// slows them tenfold; the full size runs without it.
const raceEnabled = true

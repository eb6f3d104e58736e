package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/tilefeed/tilefeed/sink"
)

// ResetCheckpoint makes a connector's checkpoint say that nothing is
// applied (snapshot.mode always and when_needed rebuild the features from
// nothing). The record is overwritten rather than removed, so the
// runtime's next write expects its generation.
func ResetCheckpoint(ctx context.Context, store Store, name string) error {
	recs, err := store.Get(ctx, []sink.Key{checkpointKey(name)})
	if err != nil {
		return fmt.Errorf("read checkpoint of connector %q: %w", name, err)
	}
	if recs[0].Gen == 0 {
		return nil
	}
	rec := sink.Record{Key: checkpointKey(name), Gen: recs[0].Gen, Bins: map[string]any{
		"lsn": int64(0), "ord": int64(0), "resume": int64(0), "changes": int64(0), "written": time.Now().UTC().UnixMicro()}}
	if err := store.Put(ctx, []sink.Record{rec}); err != nil {
		return fmt.Errorf("reset checkpoint of connector %q: %w", name, err)
	}
	return nil
}

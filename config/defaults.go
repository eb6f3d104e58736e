package config

import "time"

// Defaults, in one place. Debezium's own defaults are kept where tilefeed
// honours the property.
const (
	DefaultPort                  = 5432
	DefaultSSLMode               = "prefer"
	DefaultSlotName              = "debezium"
	DefaultPublicationName       = "dbz_publication"
	DefaultPublicationAutocreate = "all_tables"
	DefaultPluginName            = "decoderbufs" // Debezium's default; tilefeed needs pgoutput
	DefaultSnapshotMode          = "initial"     // Debezium's default
	DefaultSnapshotFetch         = 10240         // Debezium's snapshot.fetch.size default

	DefaultNamespace        = "test"
	DefaultEmbeddedDir      = "data"
	DefaultListen           = ":8083"
	DefaultHTTPSourcePath   = "/debezium"
	DefaultBatchMax         = 5000
	DefaultQueueMax         = 20000
	DefaultSnapshotBatchMax = 20000
	// DefaultArchiveRotateBytes is archive.rotate.bytes: 64 MiB of NDJSON a file.
	DefaultArchiveRotateBytes = 64 << 20
	DefaultCacheEntities      = 1000000
	DefaultCacheBytes         = 64 << 20
	DefaultStatusInterval     = 10 * time.Second
	DefaultIdleCheckpoint     = 10 * time.Second
	DefaultAerospikeTimeout   = 5 * time.Second
	DefaultDeadLetterSet      = "_dead_letters"
)

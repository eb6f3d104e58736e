package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector"
	"github.com/tilefeed/tilefeed/connector/debezium"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/decode"
	"github.com/tilefeed/tilefeed/transform"
)

// source is the connector's source with what the HTTP listener shows of it.
type source struct {
	connector.Source
	// Describe returns what the status endpoint shows (no secrets).
	Describe func() map[string]any
	// Ready reports why the source cannot deliver changes, or nil.
	Ready func() error
}

// openSource builds the source tilefeed.source names, checked and ready
// to stream from the store's checkpoint.
func openSource(ctx context.Context, c *config.Connector, st Store, engine *transform.Engine, log *slog.Logger, metrics *connector.Metrics, flt *fault) (source, error) {
	cp, _, _, err := connector.LoadCheckpoint(ctx, st, c.Name)
	if err != nil {
		return source{}, err
	}
	if c.Source.Kind != "postgres" {
		return openDebezium(c, engine, log, metrics)
	}
	src := postgres.New(c.Postgres, postgres.Options{LagInterval: 5 * time.Second, HeartbeatInterval: c.Postgres.HeartbeatInterval,
		StatusInterval: statusInterval(), AfterStatus: func() { flt.hit("after-status") },
		Store: st, Connector: c.Name, Progress: terminal(os.Stderr)}, log, metrics)
	if err := src.Setup(ctx, engine, cp.Resume); err != nil {
		return source{}, err
	}
	return source{Source: src,
		Describe: func() map[string]any {
			return map[string]any{"kind": "postgres", "topic_prefix": c.Postgres.TopicPrefix, "host": c.Postgres.Host,
				"database": c.Postgres.DBName, "slot": c.Postgres.SlotName, "publication": c.Postgres.PublicationName,
				"connected": src.Connected()}
		},
		Ready: func() error {
			if !src.Connected() {
				return fmt.Errorf("source: not connected to replication slot %q", c.Postgres.SlotName)
			}
			return nil
		}}, nil
}

// Decoder returns the Debezium decoder the connector's settings describe.
func Decoder(c *config.Connector) (*decode.Debezium, error) {
	dec := &decode.Debezium{UnavailablePlaceholder: c.Source.UnavailablePlaceholder, ColumnTypes: c.ColumnTypes(),
		DecimalHandlingMode: c.Source.DecimalHandlingMode}
	switch {
	case c.Source.SchemaRegistryURL != "":
		dec.Schemas = decode.NewSchemaRegistry(c.Source.SchemaRegistryURL, nil)
	case c.Source.AvroSchemasDir != "":
		files, err := decode.LoadSchemaFiles(os.DirFS(c.Source.AvroSchemasDir))
		if err != nil {
			return nil, fmt.Errorf("tilefeed.avro.schemas.dir: %w", err)
		}
		dec.Schemas = files
	}
	return dec, nil
}

func openDebezium(c *config.Connector, engine *transform.Engine, log *slog.Logger, metrics *connector.Metrics) (source, error) {
	dec, err := Decoder(c)
	if err != nil {
		return source{}, err
	}
	describe := func(extra map[string]any) func() map[string]any {
		return func() map[string]any {
			m := map[string]any{"kind": c.Source.Kind, "topic_prefix": c.Postgres.TopicPrefix}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
	}
	ready := func() error { return nil }
	switch c.Source.Kind {
	case "http":
		return source{Source: debezium.NewHTTP(dec, log, 30*time.Second), Ready: ready,
			Describe: describe(map[string]any{"path": c.Source.HTTPPath})}, nil
	case "file":
		return source{Source: debezium.NewFile(c.Source.Files, dec, log), Ready: ready,
			Describe: describe(map[string]any{"files": c.Source.Files})}, nil
	case "kafka":
		topics := c.Source.Kafka.Topics
		if len(topics) == 0 && c.Source.Kafka.TopicsRegex == nil {
			var tables []string
			for _, g := range engine.Groups() {
				tables = append(tables, g.Table)
			}
			topics = debezium.DefaultTopics(c.Postgres.TopicPrefix, tables)
		}
		k, err := debezium.NewKafka(c.Source, topics, dec, log, metrics)
		if err != nil {
			return source{}, err
		}
		shown := map[string]any{"brokers": c.Source.Kafka.Brokers, "topics": topics}
		if re := c.Source.Kafka.TopicsRegex; re != nil {
			shown["topics_regex"] = re.String()
		}
		return source{Source: k, Ready: k.Ready, Describe: describe(shown)}, nil
	}
	return source{}, fmt.Errorf("tilefeed.source %q: not built into this tilefeed", c.Source.Kind)
}

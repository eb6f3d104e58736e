package export

import (
	"context"
	"errors"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/transform"
)

// FromArchive runs an export of the connector's groups from an archive of
// the changes tilefeed applied (source=replay; o.Archive, or the
// connector's archive.dir).
func FromArchive(ctx context.Context, c *config.Connector, o Options) error {
	engine, err := transform.Compile(c.Features)
	if err != nil {
		return err
	}
	if o.Archive == "" && o.Changes == nil {
		o.Archive = c.Runtime.Archive.Dir
	}
	if o.Archive == "" && o.Changes == nil {
		return errors.New("a replay needs an archive: set archive.dir in the connector while it streams, or name one with -archive")
	}
	return Run(ctx, engine, nil, o)
}

// FromPostgres runs an export of the connector's groups from its
// PostgreSQL tables (source=table).
func FromPostgres(ctx context.Context, c *config.Connector, o Options) error {
	engine, err := transform.Compile(c.Features)
	if err != nil {
		return err
	}
	tr, err := postgres.OpenTableReader(ctx, c.Postgres)
	if err != nil {
		return err
	}
	defer tr.Close()
	return Run(ctx, engine, tr, o)
}

package export

import (
	"context"

	"github.com/tilefeed/tilefeed/config"
	"github.com/tilefeed/tilefeed/connector/postgres"
	"github.com/tilefeed/tilefeed/transform"
)

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

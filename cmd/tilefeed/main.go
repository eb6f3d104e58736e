// Command tilefeed turns PostgreSQL changes into fresh, exact ML features
// in Aerospike (or an embedded store).
//
//	tilefeed run -c connector.json        stream changes into features
//	tilefeed validate -c connector.json   report every problem in the file
//	tilefeed get -c connector.json GROUP col=value…   read an entity's features
//	tilefeed export -c connector.json -spine labels.csv -o training.csv
//	tilefeed config-reference             print the property reference
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  tilefeed run -c FILE                 stream changes into features
  tilefeed validate -c FILE [-live]    check the connector file (and the live tables with -live)
  tilefeed get -c FILE GROUP COLUMN=VALUE… [-at TIME] [-features A,B]
                                       print an entity's features as of now (or TIME)
  tilefeed export -c FILE -spine LABELS.csv -o TRAINING.csv [-time ts] [-groups A,B]
                                       a training set: each spine row's features as of its timestamp
  tilefeed config-reference            print the connector property reference (Markdown)

Flags may come anywhere. -name NAME names the connector of a file that has
no "name" (a Kafka Connect PUT /connectors/{name}/config body); without it
such a file is named after itself (orders.json: orders).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "validate":
		err = cmdValidate(ctx, args[1:], stdout)
	case "get":
		err = cmdGet(ctx, args[1:], stdout)
	case "export":
		err = cmdExport(ctx, args[1:], stderr)
	case "config-reference":
		err = cmdReference(stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "tilefeed: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "tilefeed: %v\n%s", err, usage)
			return 2
		}
		fmt.Fprintf(stderr, "tilefeed: %v\n", err)
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

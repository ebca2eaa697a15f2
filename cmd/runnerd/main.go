// Command runnerd is the release runner: it runs the workflow releases
// deployed to one cluster. It is `runfleet runner start` as a program of its
// own, for hosts that need only the runner; see `runnerd --help`.
package main

import (
	"context"
	"os"

	"github.com/runfleet/runfleet/internal/cli"
)

func main() {
	os.Exit(cli.RunnerdMain(context.Background(), os.Args[1:], cli.Stdio()))
}

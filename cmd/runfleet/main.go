// Command runfleet manages clusters and jobs of a runfleet deployment; see
// `runfleet --help`.
package main

import (
	"context"
	"os"

	"github.com/runfleet/runfleet/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Stdio()))
}

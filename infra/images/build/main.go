// Command build builds runfleet's local container images, as `go tool task
// images` runs it: runfleet/redis:dev, runfleet/minio:dev,
// runfleet/runfleet:dev and runfleet/runnerd:dev, all FROM scratch, with no
// registry (see package images).
//
// Usage:
//
//	go run ./infra/images/build [-v] [redis|minio|runfleet|runnerd ...]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/runfleet/runfleet/infra/images"
)

func main() {
	verbose := flag.Bool("v", false, "print the engine's build output too")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./infra/images/build [-v] [%s ...]\n\nBuilds the named images (default: all), tagged runfleet/NAME:dev.\n\nFlags:\n", strings.Join(images.Names, "|"))
		flag.PrintDefaults()
	}
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, logger, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, names []string) error {
	b, err := images.NewBuilder(ctx, images.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Build(ctx, names...); err != nil {
		return err
	}
	if len(names) == 0 {
		names = images.Names
	}
	for _, n := range names {
		fmt.Println(images.Ref(n))
	}
	return nil
}

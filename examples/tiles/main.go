// Command tiles is a direct runner for the tiles example workflow: it
// registers tiles.Survey, tiles.Tile and tiles.Merge (v1.0) for one cluster
// and runs their tasks until SIGINT or SIGTERM.
//
//	tiles --cluster dev --concurrency 4
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runfleet/runfleet/examples/tiles/tiles"
	"github.com/runfleet/runfleet/workflows"
)

const usage = `Usage: tiles --cluster C [--concurrency N] [--redis URL]

Runs the tasks of the tiles example workflow (tiles.Survey, tiles.Tile and
tiles.Merge, all v1.0) for cluster C until interrupted (SIGINT or SIGTERM: it
stops claiming, lets running tasks finish, and exits 0).

Example (all runners must reach out_dir):
  runfleet cluster create dev
  tiles --cluster dev --concurrency 4 &
  runfleet job submit --cluster dev --name alps --task tiles.Survey --version v1.0 \
    --input '{"area":{"south":45.8,"west":5.9,"north":47.8,"east":10.5},"rows":4,"cols":4,"seed":42,"out_dir":"/tmp/alps"}'

Flags:
`

func main() {
	cluster := flag.String("cluster", "", "cluster slug to serve (required)")
	concurrency := flag.Int("concurrency", 1, "tasks to run at once")
	redisURL := flag.String("redis", "", "Redis URL (default $RUNFLEET_REDIS_URL, else "+workflows.DefaultRedisURL+")")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	if *cluster == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*cluster, *concurrency, *redisURL); err != nil {
		fmt.Fprintln(os.Stderr, "tiles:", err)
		os.Exit(1)
	}
}

func run(cluster string, concurrency int, redisURL string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(logger) // the tasks log through slog.Default
	opts := []workflows.ClientOption{workflows.WithLogger(logger)}
	if redisURL != "" {
		opts = append(opts, workflows.WithRedisURL(redisURL))
	}
	client, err := workflows.NewClient(ctx, opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	runner, err := client.NewRunner(ctx, cluster, tiles.Tasks()...)
	if errors.Is(err, workflows.ErrClusterNotFound) {
		return fmt.Errorf("%w (create it first: runfleet cluster create %s)", err, cluster)
	}
	if err != nil {
		return err
	}
	logger.Info("tiles runner started", slog.String("runner_id", runner.ID()),
		slog.String("cluster", cluster), slog.Int("concurrency", concurrency))
	err = runner.RunForever(ctx, workflows.WithConcurrency(concurrency))
	logger.Info("tiles runner stopped", slog.String("runner_id", runner.ID()))
	return err
}

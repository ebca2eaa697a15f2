// Command bench is a direct runner registering the bench tasks (Noop, Sleep,
// Fail, Flaky, FanOut, all v1.0), for load tests and demos.
//
//	bench --cluster dev --concurrency 8
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

func main() {
	cluster := flag.String("cluster", "", "cluster slug to serve (required)")
	concurrency := flag.Int("concurrency", 1, "tasks to run at once")
	redisURL := flag.String("redis", "", "Redis URL (default $RUNFLEET_REDIS_URL, else redis://127.0.0.1:6379/0)")
	all := flag.Bool("all", false, "exit once no runnable task is left instead of running forever")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: bench --cluster C [--concurrency N] [--all]\n\nRuns the bench tasks Noop, Sleep, Fail, Flaky and FanOut (v1.0).\n\nExample:\n  bench --cluster dev --concurrency 8\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *cluster == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*cluster, *concurrency, *redisURL, *all); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(cluster string, concurrency int, redisURL string, all bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var opts []workflows.ClientOption
	if redisURL != "" {
		opts = append(opts, workflows.WithRedisURL(redisURL))
	}
	client, err := workflows.NewClient(ctx, append(opts, workflows.WithLogger(logger))...)
	if err != nil {
		return err
	}
	defer client.Close()
	runner, err := client.NewRunner(ctx, cluster, benchtask.All()...)
	if err != nil {
		return err
	}
	if all {
		return runner.RunAll(ctx, workflows.WithConcurrency(concurrency))
	}
	return runner.RunForever(ctx, workflows.WithConcurrency(concurrency))
}

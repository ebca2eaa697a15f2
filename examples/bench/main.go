// Command bench is a direct runner registering the bench tasks (Noop, Sleep,
// Fail, Flaky, FanOut, Probe, Crash, Ingest, Log, Traced, all v1.0), for load
// tests, chaos tests and demos. It is also a workflow project (runfleet.workflow.toml):
// `runfleet workflow build` in this directory makes a release of it that
// release runners run.
//
//	bench --cluster dev --concurrency 8
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
	"time"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

type options struct {
	cluster      string
	concurrency  int
	redisURL     string
	all          bool
	grace        time.Duration
	heartbeatTTL time.Duration
	reclaim      time.Duration
	verbose      bool
}

func main() {
	// Started by a release runner or `runfleet workflow build`: serve that.
	workflows.ServeReleaseModes(benchtask.All()...)
	var o options
	flag.StringVar(&o.cluster, "cluster", "", "cluster slug to serve (required)")
	flag.IntVar(&o.concurrency, "concurrency", 1, "tasks to run at once")
	flag.StringVar(&o.redisURL, "redis", "", "Redis URL (default $RUNFLEET_REDIS_URL, else redis://127.0.0.1:6379/0)")
	flag.BoolVar(&o.all, "all", false, "exit once no runnable task is left instead of running forever")
	flag.DurationVar(&o.grace, "grace", 30*time.Second, "on SIGINT/SIGTERM, how long running tasks may take to finish before they are handed back")
	flag.DurationVar(&o.heartbeatTTL, "heartbeat-ttl", 5*time.Second, "how long this runner counts as alive after its last heartbeat")
	flag.DurationVar(&o.reclaim, "reclaim-interval", time.Second, "how often to look for dead runners whose tasks must run again")
	flag.BoolVar(&o.verbose, "v", false, "log at info level (default: warnings only)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: bench --cluster C [--concurrency N] [--all] [flags]

Runs the bench tasks Noop, Sleep {"ms"}, Fail, Flaky {"fail_times"},
FanOut {"n","child","child_input","merge"}, Probe {"ms","children","child_ms"},
Crash {"marker"}, Ingest {"object","tag","ms"} (storage automations),
Log {"lines","message","level","attrs"} (task log records) and
Traced {"span","log","fail","children"} (spans and subtasks), all v1.0.

SIGINT or SIGTERM stops claiming and lets running tasks finish within --grace,
handing back what does not; a second signal hands them back at once.

Example:
  bench --cluster dev --concurrency 8
  bench --cluster dev --heartbeat-ttl 2s --grace 10s

Flags:
`)
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.cluster == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// First signal: stop claiming and drain. Second: hand back at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
	}()
	opts := []workflows.ClientOption{workflows.WithLogger(logger)}
	if o.redisURL != "" {
		opts = append(opts, workflows.WithRedisURL(o.redisURL))
	}
	// Wait for Redis rather than exit: a fleet restarted while Redis is
	// down should come up when it does, not crash-loop.
	var client *workflows.Client
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if client, err = workflows.NewClient(ctx, opts...); err == nil {
			break
		} else if errors.Is(err, workflows.ErrInvalidRedisURL) {
			return err
		}
		logger.Warn("cannot reach redis yet; retrying", slog.Any("error", err), slog.Duration("backoff", backoff))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
	}
	defer client.Close()
	runner, err := client.NewRunner(ctx, o.cluster, benchtask.All()...)
	if err != nil {
		return err
	}
	go func() {
		<-sigs
		runner.StopNow()
	}()
	runOpts := []workflows.RunOption{workflows.WithConcurrency(o.concurrency), workflows.WithGracePeriod(o.grace),
		workflows.WithHeartbeatTTL(o.heartbeatTTL), workflows.WithReclaimInterval(o.reclaim)}
	if o.all {
		return runner.RunAll(ctx, runOpts...)
	}
	return runner.RunForever(ctx, runOpts...)
}

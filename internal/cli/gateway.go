package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/console"
	"github.com/runfleet/runfleet/controlplane"
)

type gatewayOptions struct {
	listen    string
	store     storeOptions
	retention string
	noArchive bool
	sweep     time.Duration
	tick      time.Duration
	metrics   string
	noConsole bool
	verbose   bool
}

func (a *app) gatewayCmd() *cobra.Command {
	o := &gatewayOptions{}
	cmd := &cobra.Command{
		Use:   "gateway [--listen ADDR]",
		Short: "Serve the HTTP API and run automations, the sweep and job notifications",
		Long: `Serve the control plane without AWS: the HTTP API v1 (jobs, clusters, S3
event webhooks such as MinIO's), cron automations (checked every --tick),
the sweep (every --sweep-interval: dead runners' tasks, abandoned staged
subtasks, archiving finished jobs older than --retention to the store) and
job notification delivery (every second).

The same address serves the web console at / (log in with a token from
runfleet token create; --no-console leaves it out): jobs, their graphs, tasks,
attempts and logs, live over Server-Sent Events, with retry and cancel.

Any number of gateways may share one Redis: each cron tick and each object
version still makes exactly one job. The gateway prints the address it
listens on, then logs to stderr. SIGINT or SIGTERM stops it gracefully.

--metrics-addr serves Prometheus metrics at http://ADDR/metrics, on a
listener of its own (no token, so keep it off the public network): per
cluster, the ready tasks of each task identifier, the oldest ready task's
age and the live runners, read from Redis at each scrape.`,
		Example: `  runfleet gateway --listen 127.0.0.1:8080
  runfleet gateway --listen :8080 --store s3://runfleet/archive --retention 30d
  runfleet gateway --listen :8080 --metrics-addr :9090`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.gateway(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve the HTTP API on (port 0 picks a free one)")
	o.store.register(f)
	f.StringVar(&o.retention, "retention", "7d", "how long finished jobs stay in Redis before the sweep archives them (e.g. 36h, 30d)")
	f.BoolVar(&o.noArchive, "no-archive", false, "never archive finished jobs")
	f.DurationVar(&o.sweep, "sweep-interval", time.Minute, "how often the sweep runs (0 disables it)")
	f.DurationVar(&o.tick, "tick", time.Second, "how often cron automations are checked")
	f.StringVar(&o.metrics, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. :9090 (default: none)")
	f.BoolVar(&o.noConsole, "no-console", false, "serve the HTTP API only, without the web console at /")
	f.BoolVar(&o.verbose, "verbose", false, "log every submission and delivery")
	return cmd
}

func (a *app) gateway(ctx context.Context, o *gatewayOptions) error {
	retention, err := parseRetention(o.retention)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if o.sweep < 0 || o.tick <= 0 {
		return usageErrorf("--sweep-interval must not be negative and --tick must be positive")
	}
	logger := a.daemonLogger(o.verbose)
	a.service = "runfleet-gateway"
	client, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	cfg := controlplane.Config{Client: client, Retention: retention, Logger: logger}
	if !o.noArchive {
		st, shown, err := openStoreURL(ctx, o.store.url)
		if err != nil {
			return err
		}
		raw, _ := effectiveStoreURL(o.store.url)
		cfg.Store, cfg.StoreURL = st, raw
		logger.Info("archiving finished jobs", "store", shown, "retention", retention)
	}
	srv, err := controlplane.New(cfg)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer l.Close()
	// The metrics listener opens before anything is printed: a taken
	// address fails the start, not a running gateway.
	var ml net.Listener
	if o.metrics != "" {
		if ml, err = net.Listen("tcp", o.metrics); err != nil {
			return fmt.Errorf("gateway: serve metrics on %s: %w", o.metrics, err)
		}
		defer ml.Close()
	}
	fmt.Fprintf(a.out, "gateway listening on http://%s\n", l.Addr())
	if ml != nil {
		fmt.Fprintf(a.out, "gateway metrics on http://%s/metrics\n", ml.Addr())
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ms.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("gateway: metrics server stopped", "err", err)
			}
		}()
		defer ms.Close()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 1)
	a.notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer a.stopNotify(sigs)
	go func() {
		select {
		case <-sigs:
			logger.Info("stopping the gateway")
			cancel()
		case <-runCtx.Done():
		}
	}()
	sweep := o.sweep
	if sweep == 0 {
		sweep = -1
	}
	g := &controlplane.Gateway{Server: srv, TickEvery: o.tick, SweepEvery: sweep}
	if !o.noConsole {
		con, err := console.New(console.Config{Client: client, Logger: logger})
		if err != nil {
			return err
		}
		g.Handler = console.Mount(srv.Handler(), con)
		// Ends the console's live streams, so the graceful shutdown does
		// not wait for pages that stay open.
		go func() { <-runCtx.Done(); con.Close() }()
	}
	if err := g.Serve(runCtx, l); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

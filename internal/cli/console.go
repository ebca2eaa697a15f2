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
)

type consoleOptions struct {
	listen  string
	tlsCert string
	tlsKey  string
	session time.Duration
	verbose bool
}

func (a *app) consoleCmd() *cobra.Command {
	o := &consoleOptions{}
	cmd := &cobra.Command{
		Use:   "console [--listen ADDR]",
		Short: "Serve the web console without a gateway",
		Long: `Serve the web console on its own, for a fleet without a gateway (runfleet
gateway serves the same console at / beside the HTTP API). Open the printed
address in a browser and log in with an API token: create one with

  runfleet token create --name me --scope read

(scope submit or admin to retry and cancel jobs from the console; --cluster
limits what the token sees). The token opens a session kept in an HttpOnly,
SameSite=Strict cookie for --session; revoking the token ends it.

Pages: jobs (filters by cluster, state and name, failed only), each job with
its state, counts, progress, graph, failures, tasks, attempts, where they ran
and their logs, live over Server-Sent Events; clusters with live runners,
deployments and ready tasks per task; automations. Everything is in the
binary: no CDN, works offline.

The console reads Redis directly (--redis). Serve it on a private address, or
with --tls-cert and --tls-key (the session cookie is then Secure), or behind
a TLS proxy that sets X-Forwarded-Proto. SIGINT or SIGTERM stops it.`,
		Example: `  runfleet console --listen 127.0.0.1:8090
  runfleet console --listen :8443 --tls-cert console.crt --tls-key console.key
  runfleet --redis redis://10.0.0.5:6379/0 console --listen 127.0.0.1:0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.console(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8090", "address to serve the console on (port 0 picks a free one)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", "", "the private key (PEM) of --tls-cert")
	f.DurationVar(&o.session, "session", console.DefaultSessionTTL, "how long a login lasts")
	f.BoolVar(&o.verbose, "verbose", false, "log every login and action")
	return cmd
}

func (a *app) console(ctx context.Context, o *consoleOptions) error {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageErrorf("--tls-cert and --tls-key go together")
	}
	if o.session <= 0 {
		return usageErrorf("--session must be positive")
	}
	logger := a.daemonLogger(o.verbose)
	client, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	con, err := console.New(console.Config{Client: client, Logger: logger, SessionTTL: o.session})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer l.Close()
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(a.out, "console listening on %s://%s\n", scheme, l.Addr())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 1)
	a.notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer a.stopNotify(sigs)
	srv := &http.Server{Handler: con, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(runCtx) }}
	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- srv.ServeTLS(l, o.tlsCert, o.tlsKey)
		} else {
			errc <- srv.Serve(l)
		}
	}()
	select {
	case err = <-errc:
	case <-sigs:
		logger.Info("stopping the console")
	case <-runCtx.Done():
	}
	con.Close() // ends the live streams, which would hold the shutdown
	shutCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	if serr := srv.Shutdown(shutCtx); err == nil {
		err = serr
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

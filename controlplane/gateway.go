package controlplane

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Gateway serves the HTTP API and runs what AWS would run on a schedule:
// cron automations (EventBridge Scheduler), the sweep (the sweep function,
// every minute) and job notification delivery. Any number of gateways may
// share one Redis.
type Gateway struct {
	Server *Server
	// Handler serves the requests. Default: Server.Handler(), the HTTP
	// API alone (runfleet gateway adds the web console, console.Mount).
	Handler http.Handler
	// TickEvery is how often cron automations are checked. Default 1 s.
	TickEvery time.Duration
	// SweepEvery is how often the sweep runs; negative disables it.
	// Default 1 minute.
	SweepEvery time.Duration
	// NotifyEvery is how often pending notifications are delivered.
	// Default 1 s.
	NotifyEvery time.Duration
}

// Serve serves the API on l and runs the background loops until ctx is
// done, then shuts the server down gracefully (in-flight requests get up to
// 10 s).
func (g *Gateway) Serve(ctx context.Context, l net.Listener) error {
	if g.TickEvery <= 0 {
		g.TickEvery = time.Second
	}
	if g.SweepEvery == 0 {
		g.SweepEvery = time.Minute
	}
	if g.NotifyEvery <= 0 {
		g.NotifyEvery = time.Second
	}
	s := g.Server
	h := g.Handler
	if h == nil {
		h = s.Handler()
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	loopCtx, stopLoops := context.WithCancel(ctx)
	var wg sync.WaitGroup
	every := func(d time.Duration, name string, fn func(context.Context) error) {
		wg.Go(func() {
			t := time.NewTicker(d)
			defer t.Stop()
			for {
				if err := fn(loopCtx); err != nil && loopCtx.Err() == nil {
					s.log.Error("gateway: "+name, "err", err)
				}
				select {
				case <-loopCtx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	every(g.TickEvery, "cron automations", func(ctx context.Context) error {
		_, err := s.FireDueTicks(ctx)
		return err
	})
	every(g.NotifyEvery, "job notifications", func(ctx context.Context) error {
		_, _, err := s.DeliverNotifications(ctx)
		return err
	})
	if g.SweepEvery > 0 {
		every(g.SweepEvery, "sweep", func(ctx context.Context) error {
			rep, err := s.Sweep(ctx)
			if rep.Reclaim.Runners > 0 || rep.Archived > 0 || rep.StagesDropped > 0 {
				s.log.Info("gateway: swept", "dead_runners", rep.Reclaim.Runners, "requeued", rep.Reclaim.Requeued,
					"archived", rep.Archived, "stages_dropped", rep.StagesDropped)
			}
			return err
		})
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = srv.Shutdown(shutCtx)
		cancel()
	}
	stopLoops()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

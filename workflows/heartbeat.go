package workflows

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runfleet/runfleet/internal/backoff"
	"github.com/runfleet/runfleet/queue"
)

// heartbeat keeps the runner's heartbeat key alive in Redis. While it exists
// nobody touches the runner's tasks, however long they run; once it expires,
// live runners queue them again.
type heartbeat struct {
	r        *Runner
	ttl      time.Duration
	lastBeat atomic.Int64 // unix nanos of the last heartbeat Redis accepted
	cancel   context.CancelFunc
	done     chan struct{}
}

// startHeartbeat writes the first heartbeat, retrying until it lands or ctx
// ends, then keeps beating five times per TTL in the background.
func (r *Runner) startHeartbeat(ctx context.Context, cfg runConfig) (*heartbeat, error) {
	host, _ := os.Hostname()
	info := queue.RunnerInfo{ID: r.id, Streams: r.streams, Host: host, PID: os.Getpid(), Started: time.Now(),
		Version: buildVersion(), Concurrency: cfg.concurrency}
	if cfg.devices != nil {
		info.Devices = cfg.devices.all
	}
	h := &heartbeat{r: r, ttl: cfg.heartbeatTTL, done: make(chan struct{})}
	retry := backoff.New(50*time.Millisecond, 5*time.Second)
	for {
		err := r.client.q.Heartbeat(ctx, r.cluster, info, h.ttl, true)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.logger.Warn("first heartbeat failed; retrying", slog.Any("error", err), slog.Duration("backoff", retry.Delay()))
		retry.Sleep(ctx)
	}
	h.lastBeat.Store(time.Now().UnixNano())
	// The heartbeat outlives the fetch context: a stopping runner still
	// holds tasks until they are committed or handed back.
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	go h.loop(bctx, info)
	return h, nil
}

func (h *heartbeat) loop(ctx context.Context, info queue.RunnerInfo) {
	defer close(h.done)
	every := h.ttl / 5
	t := time.NewTimer(backoff.Jitter(every))
	defer t.Stop()
	failing := false
	for beats := 1; ; beats++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		// The registry entry is rewritten every 10th beat, and after a
		// failure, in case a reclaimer removed it meanwhile.
		full := failing || beats%10 == 0
		if err := h.r.client.q.Heartbeat(ctx, h.r.cluster, info, h.ttl, full); err != nil {
			if !failing && ctx.Err() == nil {
				h.r.logger.Warn("heartbeat failed; tasks stay with this runner while its lease holds",
					slog.Any("error", err), slog.Time("lease_until", h.lease()))
			}
			failing = true
		} else {
			if failing {
				h.r.logger.Info("heartbeat restored")
			}
			failing = false
			h.lastBeat.Store(start.UnixNano())
		}
		t.Reset(backoff.Jitter(every))
	}
}

// buildVersion is the runfleet build this binary runs, shown in the
// runner registry: the module version of the runfleet CLI or runnerd, or the
// SDK version a user's binary was built with; "(devel)" when unknown.
var buildVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if bi.Main.Path == sdkModule {
		return orDevel(bi.Main.Version)
	}
	for _, m := range bi.Deps {
		if m.Path == sdkModule {
			if m.Replace != nil && m.Replace.Version != "" {
				return m.Replace.Version
			}
			return orDevel(m.Version)
		}
	}
	return "(devel)"
})

// sdkModule is runfleet's module path.
const sdkModule = "github.com/runfleet/runfleet"

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}

// lease is when this runner's heartbeat key expires if no beat lands before:
// results written after it may find their tasks reclaimed.
func (h *heartbeat) lease() time.Time {
	return time.Unix(0, h.lastBeat.Load()).Add(h.ttl)
}

// stop ends the heartbeat. A runner that reclaimed its own pending entries
// leaves no trace; otherwise it is marked gone at once, so whatever it still
// holds is reclaimed without waiting for its heartbeat to expire.
func (h *heartbeat) stop(ctx context.Context, reclaimedOwn bool) {
	h.cancel()
	<-h.done
	unregister := h.r.client.q.Stopped
	if reclaimedOwn {
		unregister = h.r.client.q.Gone
	}
	if err := unregister(ctx, h.r.cluster, h.r.id); err != nil {
		h.r.logger.Warn("unregister runner failed; its heartbeat expires on its own", slog.Any("error", err))
	}
}

package workflows

import (
	"context"
	"sync"
	"time"

	"github.com/runfleet/runfleet/queue"
)

// hintReader reads on a dedicated connection (queue.Reader) so a blocked
// read can be woken when the runner stops; it reopens the connection after
// an error, and falls back to pooled reads where that is not possible.
type hintReader struct {
	r  *Runner
	mu sync.Mutex
	qr *queue.Reader
}

func (h *hintReader) read(ctx context.Context, count int, block time.Duration) ([]queue.Hint, error) {
	h.mu.Lock()
	qr := h.qr
	if qr == nil {
		var err error
		if qr, err = h.r.client.q.NewReader(ctx, h.r.id, h.r.streams); err == nil {
			h.qr = qr
		}
	}
	h.mu.Unlock()
	if qr == nil {
		return h.r.client.q.Read(ctx, h.r.id, h.r.streams, count, block)
	}
	hints, err := qr.Read(ctx, count, block)
	if err != nil {
		h.close()
	}
	return hints, err
}

// wakeOnCancel unblocks the reader once ctx is done, and keeps doing so
// until stop closes, in case a read started after the first wake-up.
func (h *hintReader) wakeOnCancel(ctx, bg context.Context, stop <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-stop:
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		if h.qr != nil {
			_ = h.qr.Unblock(bg)
		}
		h.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (h *hintReader) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.qr != nil {
		_ = h.qr.Close()
		h.qr = nil
	}
}

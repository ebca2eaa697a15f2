package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// Live updates. A job page opens /jobs/{id}/events (Server-Sent Events).
// Behind it, one watcher per job reads the job's event stream with a
// blocking XREAD, exactly as `runfleet job wait` does, and re-reads the job
// when it changes; every open page of the job shares that watcher.

const (
	// liveBlock bounds one blocking read of a job's events, so a watcher
	// notices within a second that its last page closed.
	liveBlock = time.Second
	// liveEvery is the least time between two reads of a job prompted by
	// progress and task-count events; a state change is read at once.
	liveEvery = 100 * time.Millisecond
	// liveTrail is when a read prompted by events is followed by one more:
	// a commit adds no task-count event within 250 ms of the job's last
	// event, so the counts it changed show by then.
	liveTrail = 300 * time.Millisecond
	// liveFallback is how often the job is read anyway, for events lost
	// (a Redis restart without persistence).
	liveFallback = 5 * time.Second
	// livePing is how often an idle stream sends a comment, so proxies
	// keep it open and a closed page is noticed.
	livePing = 15 * time.Second
	// maxWatchers bounds the jobs watched at once: each holds one
	// connection of the client's pool while it blocks (the pool has 10 per
	// CPU by default), and pages must still get theirs. Pages of further
	// jobs are refused the stream and refresh every few seconds instead.
	maxWatchers = 8
)

// jobUpdate is the data of one "job" event: what the page shows at once.
type jobUpdate struct {
	ID       string           `json:"id"`
	State    string           `json:"state"`
	Finished bool             `json:"finished"`
	Total    int64            `json:"total"`
	Counts   map[string]int64 `json:"counts"`
	Progress []progressUpdate `json:"progress"`
}

type progressUpdate struct {
	Label   string `json:"label"`
	Done    int64  `json:"done"`
	Total   int64  `json:"total"`
	Percent int64  `json:"percent"`
}

func updateOf(j queue.Job) []byte {
	u := jobUpdate{ID: j.ID, State: j.State, Finished: workflows.Finished(j.State), Counts: j.TaskCounts,
		Progress: []progressUpdate{}}
	for _, n := range j.TaskCounts {
		u.Total += n
	}
	for _, p := range j.Progress {
		u.Progress = append(u.Progress, progressUpdate{Label: p.Label, Done: p.Done, Total: p.Total, Percent: percent(p.Done, p.Total)})
	}
	b, _ := json.Marshal(u)
	return b
}

var errTooManyWatchers = errors.New("too many jobs watched at once")

// hub owns the watchers, one per watched job.
type hub struct {
	c        *Console
	mu       sync.Mutex
	closed   bool
	watchers map[string]*watcher
	wg       sync.WaitGroup
}

func newHub(c *Console) *hub { return &hub{c: c, watchers: map[string]*watcher{}} }

// watcher follows one job for its subscribers. Each subscriber channel
// holds at most the newest update: a slow page skips to the latest.
type watcher struct {
	id     string
	cancel context.CancelFunc
	subs   map[chan []byte]struct{}
	latest []byte
}

// subscribe returns a channel of the job's updates, starting with the
// current one, and the function that ends the subscription. The channel
// is closed when the hub closes.
func (h *hub) subscribe(jobID string) (<-chan []byte, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, errors.New("console is closing")
	}
	w := h.watchers[jobID]
	if w == nil {
		if len(h.watchers) >= maxWatchers {
			return nil, nil, errTooManyWatchers
		}
		ctx, cancel := context.WithCancel(context.Background())
		w = &watcher{id: jobID, cancel: cancel, subs: map[chan []byte]struct{}{}}
		h.watchers[jobID] = w
		h.wg.Go(func() { h.watch(ctx, w) })
	}
	ch := make(chan []byte, 1)
	w.subs[ch] = struct{}{}
	if w.latest != nil {
		ch <- w.latest
	}
	return ch, func() { h.unsubscribe(w, ch) }, nil
}

func (h *hub) unsubscribe(w *watcher, ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := w.subs[ch]; !ok {
		return // closed by close()
	}
	delete(w.subs, ch)
	if len(w.subs) == 0 && h.watchers[w.id] == w {
		delete(h.watchers, w.id)
		w.cancel()
	}
}

// publish hands b to every subscriber of w, replacing an update a
// subscriber has not taken yet.
func (h *hub) publish(w *watcher, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.latest = b
	for ch := range w.subs {
		select {
		case <-ch:
		default:
		}
		ch <- b
	}
}

// close stops every watcher and closes every subscriber channel, ending
// the streams; it waits for the watchers' last reads (at most liveBlock).
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	for id, w := range h.watchers {
		w.cancel()
		for ch := range w.subs {
			close(ch)
			delete(w.subs, ch)
		}
		delete(h.watchers, id)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// watch reads the job, then waits on its events and reads it again after
// each change (state changes at once, other changes at most every
// liveEvery, one trailing read liveTrail after events), or every
// liveFallback without events, until ctx ends.
func (h *hub) watch(ctx context.Context, w *watcher) {
	q := h.c.q
	last := queue.NoEvent
	var readAt, due time.Time
	var sent []byte
	read := func() {
		j, l, err := q.WatchJob(ctx, w.id)
		readAt = time.Now()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, queue.ErrJobNotFound) {
				h.c.log.Warn("console: read watched job", "job", w.id, "err", err)
			}
			return
		}
		last = l
		if b := updateOf(j); !bytes.Equal(b, sent) {
			sent = b
			h.publish(w, b)
		}
	}
	read()
	trail := false
	for ctx.Err() == nil {
		until := readAt.Add(liveFallback)
		if !due.IsZero() && due.Before(until) {
			until = due
		}
		block := min(liveBlock, time.Until(until))
		if block < time.Millisecond {
			read()
			due = time.Time{}
			if trail {
				due, trail = readAt.Add(liveTrail), false
			}
			continue
		}
		evs, err := q.JobEvents(ctx, w.id, last, 64, block)
		if err != nil {
			if ctx.Err() == nil {
				h.c.log.Warn("console: read job events", "job", w.id, "err", err)
				pause(ctx, time.Second)
			}
			continue
		}
		if len(evs) == 0 {
			continue
		}
		last = evs[len(evs)-1].ID
		trail = true
		next := readAt.Add(liveEvery)
		for _, e := range evs {
			if e.Kind == queue.EventState {
				next = time.Now()
			}
		}
		if due.IsZero() || next.Before(due) {
			due = next
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// jobEvents streams a job's updates as Server-Sent Events named "job". An
// archived job does not change: it answers 204, which tells the browser
// not to reconnect.
func (c *Console) jobEvents(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	j, _, ok := c.loadJob(ctx, w, r, s)
	cancel()
	if !ok {
		return
	}
	if j.Archived {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	updates, stop, err := c.hub.subscribe(j.ID)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "live updates unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer stop()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// Reconnect after 2 s when the stream breaks (a restarted gateway).
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	every := c.cfg.LivePing
	if every <= 0 {
		every = livePing
	}
	ping := time.NewTicker(every)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-updates:
			if !ok {
				return
			}
			_, err = fmt.Fprintf(w, "event: job\ndata: %s\n\n", b)
		case <-ping.C:
			// A stream outliving its session (logged out, token revoked)
			// ends here: the browser's reconnect then meets the login.
			if live, serr := c.session(r); serr != nil || live == nil {
				return
			}
			_, err = fmt.Fprint(w, ": ping\n\n")
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

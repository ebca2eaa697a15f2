package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runfleet/runfleet/queue"
)

// Metrics is the Prometheus metrics of the runners that share it, on a
// registry of its own (never the global default one), so that several
// runner sets in one process do not collide. Runners of one process
// (runnerd's release runners) share one Metrics and add to the same series.
//
// The hot path never touches a label string: each (cluster, task) gets its
// children once, at the start of a run, kept with the runner's registration;
// a runner without metrics pays one nil check per task.
type Metrics struct {
	reg *prometheus.Registry

	claimed, computed, failed, retried, lost *prometheus.CounterVec
	duration, queueWait                      *prometheus.HistogramVec

	mu       sync.Mutex
	children map[metricsKey]*taskMetrics
	runs     map[*producer]struct{} // runs in progress, for the slot gauges
}

type metricsKey struct {
	cluster string
	task    queue.Identifier
}

// Execution outcomes, the "outcome" label of runfleet_task_duration_seconds.
const (
	outcomeComputed = iota
	outcomeFailed
	outcomeRetried
	outcomeLost
	outcomeHandedBack
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"computed", "failed", "retried", "lost", "handed_back"}

// taskMetrics is the labelled children of one (cluster, task): looked up
// once, then updated per task without hashing a label.
type taskMetrics struct {
	claimed, computed, failed, retried, lost prometheus.Counter
	queueWait                                prometheus.Observer
	took                                     [numOutcomes]prometheus.Observer
}

// durationBuckets spans sub-millisecond tasks to hour-long ones.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// NewMetrics returns an empty set of runner metrics, with the Go and
// process collectors.
func NewMetrics() *Metrics {
	labels := []string{"cluster", "task"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		claimed:  counter("runfleet_tasks_claimed_total", "Tasks this process claimed and started to execute."),
		computed: counter("runfleet_tasks_computed_total", "Executions whose result was committed as computed."),
		failed:   counter("runfleet_tasks_failed_total", "Executions that failed for good: the task is failed (no retry left, or an optional or contained failure)."),
		retried:  counter("runfleet_tasks_retried_total", "Executions that failed and queued the task again, counting a retry."),
		lost: counter("runfleet_tasks_lost_total",
			"Executions this process lost: the task was taken from this runner before its result landed (its lease ran out), or the worker process running it died."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "runfleet_task_duration_seconds",
			Help: "Execution time of tasks, by outcome.", Buckets: durationBuckets}, []string{"cluster", "task", "outcome"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "runfleet_task_queue_wait_seconds",
			Help:    "Time from a task's hint entering its stream (the task becoming ready, or being handed on) to its execution starting.",
			Buckets: durationBuckets}, labels),
		children: map[metricsKey]*taskMetrics{},
		runs:     map[*producer]struct{}{},
	}
	m.reg.MustRegister(m.claimed, m.computed, m.failed, m.retried, m.lost, m.duration, m.queueWait,
		slotsCollector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry the metrics are on, to add a process's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Serve serves the metrics at http://addr/metrics until ctx ends. The
// listener is open when it returns; errors name addr. A nil logger is
// slog.Default().
func (m *Metrics) Serve(ctx context.Context, addr string, logger *slog.Logger) (net.Addr, error) {
	if logger == nil {
		logger = slog.Default()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", slog.String("addr", l.Addr().String()), slog.Any("error", err))
		}
	}()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	return l.Addr(), nil
}

// forTask returns the children of (cluster, id), made on first use.
func (m *Metrics) forTask(cluster string, id queue.Identifier) *taskMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := metricsKey{cluster, id}
	if t, ok := m.children[k]; ok {
		return t
	}
	task := id.String()
	t := &taskMetrics{
		claimed:   m.claimed.WithLabelValues(cluster, task),
		computed:  m.computed.WithLabelValues(cluster, task),
		failed:    m.failed.WithLabelValues(cluster, task),
		retried:   m.retried.WithLabelValues(cluster, task),
		lost:      m.lost.WithLabelValues(cluster, task),
		queueWait: m.queueWait.WithLabelValues(cluster, task),
	}
	for o := range numOutcomes {
		t.took[o] = m.duration.WithLabelValues(cluster, task, outcomeNames[o])
	}
	m.children[k] = t
	return t
}

// startRun attaches the children of every registered task of r to its
// registrations and counts p's slots; the returned func detaches p.
func (m *Metrics) startRun(r *Runner, p *producer) func() {
	for name, regs := range r.reg.byName {
		for i := range regs {
			r.reg.byName[name][i].m = m.forTask(r.cluster, regs[i].id)
		}
	}
	m.mu.Lock()
	m.runs[p] = struct{}{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.runs, p)
		m.mu.Unlock()
	}
}

var (
	slotsBusyDesc = prometheus.NewDesc("runfleet_slots_busy", "Execution slots holding a claimed task, summed over this process's running runners.", []string{"cluster"}, nil)
	slotsFreeDesc = prometheus.NewDesc("runfleet_slots_free", "Execution slots free to claim a task, summed over this process's running runners.", []string{"cluster"}, nil)
)

// slotsCollector reads the slot gauges at scrape time: the runs keep the
// counts anyway, so tasks pay nothing for them.
type slotsCollector struct{ m *Metrics }

func (c slotsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- slotsBusyDesc
	ch <- slotsFreeDesc
}

func (c slotsCollector) Collect(ch chan<- prometheus.Metric) {
	busy, free := map[string]int64{}, map[string]int64{}
	c.m.mu.Lock()
	for p := range c.m.runs {
		n := p.held.count.Load()
		busy[p.r.cluster] += n
		free[p.r.cluster] += max(0, int64(p.cfg.concurrency)-n)
	}
	c.m.mu.Unlock()
	for cluster, n := range busy {
		ch <- prometheus.MustNewConstMetric(slotsBusyDesc, prometheus.GaugeValue, float64(n), cluster)
		ch <- prometheus.MustNewConstMetric(slotsFreeDesc, prometheus.GaugeValue, float64(free[cluster]), cluster)
	}
}

// WithMetrics makes the run add to m (see Metrics); m is served by whoever
// made it.
func WithMetrics(m *Metrics) RunOption { return func(c *runConfig) { c.metrics = m } }

// WithMetricsAddr serves Prometheus metrics at http://addr/metrics while the
// run lasts (":9090", or "127.0.0.1:0" for a free port, see
// Runner.MetricsAddr). The runner keeps its metrics across runs. Default:
// no metrics, at no cost.
func WithMetricsAddr(addr string) RunOption { return func(c *runConfig) { c.metricsAddr = addr } }

// MetricsAddr is the address the runner's metrics are served on during a
// run started with WithMetricsAddr, or "" when none is.
func (r *Runner) MetricsAddr() string {
	if a := r.metricsAddr.Load(); a != nil {
		return *a
	}
	return ""
}

// startMetrics attaches the run's metrics (and serves them, with
// WithMetricsAddr) until the returned func is called.
func (r *Runner) startMetrics(ctx context.Context, p *producer) (stop func(), err error) {
	m := p.cfg.metrics
	stopServe := func() {}
	if p.cfg.metricsAddr != "" {
		if m == nil {
			if r.ownMetrics == nil {
				r.ownMetrics = NewMetrics()
			}
			m = r.ownMetrics
		}
		serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		addr, err := m.Serve(serveCtx, p.cfg.metricsAddr, r.logger)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("runner: %w", err)
		}
		s := addr.String()
		r.metricsAddr.Store(&s)
		stopServe = func() {
			r.metricsAddr.Store(nil)
			cancel()
		}
	}
	if m == nil {
		if r.hadMetrics {
			// A run without metrics after one with: count nothing.
			for _, regs := range r.reg.byName {
				for i := range regs {
					regs[i].m = nil
				}
			}
		}
		return func() {}, nil
	}
	r.hadMetrics = true
	p.metrics = m
	detach := m.startRun(r, p)
	return func() { detach(); stopServe() }, nil
}

// started counts a task an executor starts: claimed, and its wait since its
// hint entered the stream, dated by the entry id (milliseconds, then "-"):
// no Redis call and no allocation.
func (t *taskMetrics) started(c queue.Claimed, now time.Time) {
	t.claimed.Inc()
	if ms, _, ok := strings.Cut(c.Hint.ID, "-"); ok {
		if v, err := strconv.ParseInt(ms, 10, 64); err == nil {
			t.queueWait.Observe(max(0, now.Sub(time.UnixMilli(v))).Seconds())
		}
	}
}

// finished counts one execution's outcome.
func (t *taskMetrics) finished(outcome int, took time.Duration) {
	switch outcome {
	case outcomeComputed:
		t.computed.Inc()
	case outcomeFailed:
		t.failed.Inc()
	case outcomeRetried:
		t.retried.Inc()
	case outcomeLost:
		t.lost.Inc()
	}
	t.took[outcome].Observe(took.Seconds())
}

// failOutcome maps what rf_fail answered for a failure to a metric outcome.
func failOutcome(f queue.Failure, res string) int {
	switch {
	case f.HandBack:
		return outcomeHandedBack
	case f.Lost || res == queue.OutcomeLost:
		return outcomeLost
	case res == queue.OutcomeRetry:
		return outcomeRetried
	default:
		return outcomeFailed
	}
}

// count counts o's outcome, if o has metrics.
func (o *outcome) count(outcome int) {
	if o.m != nil {
		o.m.finished(outcome, o.took)
	}
}

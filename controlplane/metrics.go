package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runfleet/runfleet/queue"
)

// Queue depth gauges, read from Redis at scrape time for every cluster: the
// same numbers as the sweep's EMF line (queue.ClusterMetrics), for
// Prometheus and autoscalers such as KEDA.
var (
	queueReadyDesc = prometheus.NewDesc("runfleet_queue_ready_tasks",
		"Tasks ready and not yet handed to a runner, by cluster and task identifier (an upper bound: stale hints count until read).",
		[]string{"cluster", "task"}, nil)
	queueRunningDesc = prometheus.NewDesc("runfleet_queue_running_tasks",
		"Tasks handed to runners and not yet finished.", []string{"cluster"}, nil)
	queueOldestDesc = prometheus.NewDesc("runfleet_queue_oldest_ready_age_seconds",
		"How long the oldest ready task of the cluster has waited; 0 when none is ready.", []string{"cluster"}, nil)
	runnersAliveDesc = prometheus.NewDesc("runfleet_runners_alive",
		"Runners of the cluster whose heartbeat has not expired.", []string{"cluster"}, nil)
)

// scrapeTimeout bounds the Redis reads of one scrape.
const scrapeTimeout = 10 * time.Second

// queueCollector reads every cluster's queue depth when scraped.
type queueCollector struct {
	q *queue.Queue
}

// NewQueueCollector returns a collector of the queue depth of every
// cluster in q, read when scraped. A cluster that cannot be read is reported
// as a scrape error and does not hide the others.
func NewQueueCollector(q *queue.Queue) prometheus.Collector { return queueCollector{q: q} }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueReadyDesc
	ch <- queueRunningDesc
	ch <- queueOldestDesc
	ch <- runnersAliveDesc
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	clusters, err := c.q.ListClusters(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(runnersAliveDesc, err)
		return
	}
	for _, cl := range clusters {
		m, err := c.q.ClusterMetrics(ctx, cl.Slug)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(queueReadyDesc, fmt.Errorf("cluster %s: %w", cl.Slug, err))
			continue
		}
		for task, n := range m.Ready {
			ch <- prometheus.MustNewConstMetric(queueReadyDesc, prometheus.GaugeValue, float64(n), cl.Slug, task)
		}
		ch <- prometheus.MustNewConstMetric(queueRunningDesc, prometheus.GaugeValue, float64(m.Running), cl.Slug)
		ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, m.OldestReadyAge.Seconds(), cl.Slug)
		ch <- prometheus.MustNewConstMetric(runnersAliveDesc, prometheus.GaugeValue, float64(m.LiveRunners), cl.Slug)
	}
}

// MetricsHandler serves the gateway's Prometheus metrics: the queue depth
// of every cluster (see NewQueueCollector) and the Go and process
// collectors, on a registry of its own. A scrape with an unreadable cluster
// still answers with the rest, and logs the error.
func (s *Server) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewQueueCollector(s.cfg.Client.Queue()),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:      reg,
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slogPrinter{s.log},
	})
}

// slogPrinter adapts the promhttp error log to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics scrape: " + fmt.Sprint(v...)) }

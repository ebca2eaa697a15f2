package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// SweepReport counts what one sweep did.
type SweepReport struct {
	// Reclaim is what Client.Sweep did: dead runners, re-queued tasks,
	// republished hints.
	Reclaim workflows.SweepReport `json:"-"`
	// StagesDropped counts task hashes of staged subtask sets deleted
	// because the attempt that staged them can no longer commit.
	StagesDropped int `json:"stages_dropped"`
	// Archived counts finished jobs written to the store and removed from
	// Redis.
	Archived int `json:"archived"`
	// Notified counts job notifications delivered (acknowledged with 2xx);
	// NotifyFailed those whose attempt failed and stay pending.
	Notified     int `json:"notified"`
	NotifyFailed int `json:"notify_failed"`
	// SchedulesChanged counts EventBridge schedules created, updated or
	// deleted to match the cron automations (when Config.Schedules is set).
	SchedulesChanged int `json:"schedules_changed"`
	// CronFired counts cron ticks the sweep fired itself (when
	// Config.Schedules is set; see schedules.go).
	CronFired int `json:"cron_fired"`
}

// Sweep runs the periodic upkeep once: reclaim dead runners' tasks,
// republish outboxes, drop staged chunks of attempts that never committed,
// archive finished jobs older than the retention (when a store is
// configured), deliver pending job notifications, sync the EventBridge
// schedules of cron automations and fire due cron ticks (when
// Config.Schedules is set), and write one metrics line per cluster (when
// Config.Metrics is set). A step that fails does not
// stop the others: the error joins every step's error, each named by its
// step, and the report counts what did happen.
func (s *Server) Sweep(ctx context.Context) (SweepReport, error) {
	var rep SweepReport
	var errs []error
	step := func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	c := s.cfg.Client

	r, err := c.Sweep(ctx)
	rep.Reclaim = r
	step("reclaim dead runners and republish", err)

	rep.StagesDropped, err = c.Queue().DropAllAbandonedStages(ctx)
	step("drop abandoned subtask stages", err)

	if s.cfg.Store != nil {
		cutoff := s.cfg.Now().Add(-s.cfg.Retention)
		rep.Archived, err = c.ArchiveJobs(ctx, s.cfg.Store, s.cfg.StoreURL, cutoff)
		step("archive jobs", err)
	}

	rep.Notified, rep.NotifyFailed, err = s.DeliverNotifications(ctx)
	step("deliver notifications", err)

	if s.cfg.Schedules != nil {
		rep.SchedulesChanged, err = s.syncSchedules(ctx)
		step("sync cron schedules", err)
		rep.CronFired, err = s.FireDueTicks(ctx)
		step("fire due cron ticks", err)
	}

	if s.cfg.Metrics != nil {
		step("write metrics", s.writeMetrics(ctx))
	}
	if n := rep.Reclaim.Runners + rep.Reclaim.Requeued + rep.StagesDropped + rep.Archived + rep.Notified +
		rep.SchedulesChanged + rep.CronFired; n > 0 {
		s.log.Info("sweep",
			slog.Int("dead_runners", rep.Reclaim.Runners), slog.Int("requeued", rep.Reclaim.Requeued),
			slog.Int("stages_dropped", rep.StagesDropped), slog.Int("archived", rep.Archived),
			slog.Int("notified", rep.Notified), slog.Int("schedules_changed", rep.SchedulesChanged),
			slog.Int("cron_fired", rep.CronFired))
	}
	return rep, errors.Join(errs...)
}

// Metrics are written in CloudWatch embedded metric format (EMF): one JSON
// line per cluster, which CloudWatch Logs turns into metrics of namespace
// MetricsNamespace with the dimension Cluster, as it does for anything a
// Lambda function prints to stdout:
//
//	ReadyTasks             Count    stream entries not yet handed to a runner
//	RunningTasks           Count    entries handed out and not yet acknowledged
//	LiveRunners            Count    runners whose heartbeat has not expired
//	OldestReadyAgeSeconds  Seconds  wait of the oldest ready entry, 0 when none
//
// The line also carries ReadyByTask, the ready entries per task identifier
// ("Name@vM.m", identifiers with none left out). It is a plain property,
// not a metric: one metric per identifier would multiply the custom metrics
// billed, and the property is still searchable in CloudWatch Logs Insights.
const MetricsNamespace = "runfleet"

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMeta struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

// emfLine is one cluster's metrics; the field order is the line's.
type emfLine struct {
	AWS                   emfMeta          `json:"_aws"`
	Cluster               string           `json:"Cluster"`
	ReadyTasks            int64            `json:"ReadyTasks"`
	RunningTasks          int64            `json:"RunningTasks"`
	LiveRunners           int64            `json:"LiveRunners"`
	OldestReadyAgeSeconds float64          `json:"OldestReadyAgeSeconds"`
	ReadyByTask           map[string]int64 `json:"ReadyByTask"`
}

var emfDirectives = []emfDirective{{
	Namespace:  MetricsNamespace,
	Dimensions: [][]string{{"Cluster"}},
	Metrics: []emfMetric{
		{Name: "ReadyTasks", Unit: "Count"},
		{Name: "RunningTasks", Unit: "Count"},
		{Name: "LiveRunners", Unit: "Count"},
		{Name: "OldestReadyAgeSeconds", Unit: "Seconds"},
	},
}}

// metricsLine renders m as one EMF line, newline included.
func metricsLine(m queue.ClusterMetrics, at time.Time) ([]byte, error) {
	b, err := json.Marshal(emfLine{
		AWS:                   emfMeta{Timestamp: at.UnixMilli(), CloudWatchMetrics: emfDirectives},
		Cluster:               m.Cluster,
		ReadyTasks:            m.ReadyTotal,
		RunningTasks:          m.Running,
		LiveRunners:           m.LiveRunners,
		OldestReadyAgeSeconds: m.OldestReadyAge.Seconds(),
		ReadyByTask:           m.Ready,
	})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeMetrics writes one line per cluster to Config.Metrics; a cluster
// whose metrics cannot be read does not keep the others' lines.
func (s *Server) writeMetrics(ctx context.Context) error {
	q := s.cfg.Client.Queue()
	clusters, err := q.ListClusters(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range clusters {
		m, err := q.ClusterMetrics(ctx, c.Slug)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		line, err := metricsLine(m, s.cfg.Now())
		if err == nil {
			// One Write per line, so a shared writer never interleaves
			// lines of two writers mid-line.
			_, err = s.cfg.Metrics.Write(line)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.Slug, err))
		}
	}
	return errors.Join(errs...)
}

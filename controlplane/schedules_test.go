package controlplane_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/scheduler"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra/schedsync"
)

// TestSweepSyncsSchedulesAndFiresEachTickOnce runs the sweep as the sweep
// function does on AWS: Redis holds the automations, EventBridge
// Scheduler (moto) the schedules.
func TestSweepSyncsSchedulesAndFiresEachTickOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	moto := startMoto(t)
	sc := scheduler.NewFromConfig(moto)
	_, err := sc.CreateScheduleGroup(b.ctx, &scheduler.CreateScheduleGroupInput{Name: aws.String("runfleet-t1")})
	require.NoError(t, err)

	hourly, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "hourly", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Cron: "@hourly"})
	require.NoError(t, err)
	// EventBridge cannot fire on seconds: the sweep does.
	halfMinute, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "half-minute", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Cron: "*/30 * * * * *"})
	require.NoError(t, err)
	_, err = controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "uploads", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Storage: "s3://inbox/"})
	require.NoError(t, err)

	syncer := schedsync.New(moto, schedsync.Target{Mode: schedsync.Scheduler, Stack: "t1",
		FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:runfleet-t1-submit",
		RoleARN:     "arn:aws:iam::123456789012:role/runfleet-t1-scheduler"})
	// The clock stands still until the test moves it past the first tick.
	clk := &clock{t: hourly.CreatedAt}
	srv, err := controlplane.New(controlplane.Config{Client: b.client, Schedules: syncer, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)

	rep, err := srv.Sweep(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.SchedulesChanged, "one schedule: the hourly automation's")
	require.Zero(t, rep.CronFired, "no tick is due at creation")
	names := func() []string {
		out, err := sc.ListSchedules(b.ctx, &scheduler.ListSchedulesInput{GroupName: aws.String("runfleet-t1")})
		require.NoError(t, err)
		var n []string
		for _, s := range out.Schedules {
			n = append(n, aws.ToString(s.Name))
		}
		return n
	}
	require.Equal(t, []string{"cron-" + hourly.ID}, names())
	got, err := sc.GetSchedule(b.ctx, &scheduler.GetScheduleInput{Name: aws.String("cron-" + hourly.ID), GroupName: aws.String("runfleet-t1")})
	require.NoError(t, err)
	require.Equal(t, "cron(0 * * * ? *)", aws.ToString(got.ScheduleExpression))

	rep, err = srv.Sweep(b.ctx)
	require.NoError(t, err)
	require.Zero(t, rep.SchedulesChanged, "in sync")

	// EventBridge fires the hourly tick T; the next sweep, 30 s later,
	// fires T too (it cannot know EventBridge did) and the half-minute
	// automation's latest tick. T makes one job, not two.
	tick := hourly.CreatedAt.Truncate(time.Hour).Add(time.Hour)
	ev, err := srv.HandleSchedule(b.ctx, controlplane.ScheduleEvent{Automation: hourly.ID, ScheduledTime: tick})
	require.NoError(t, err)
	require.True(t, ev.Submitted[0].Created)
	require.Equal(t, 1, b.jobCount(t))
	clk.add(tick.Add(30 * time.Second).Sub(clk.now()))
	rep, err = srv.Sweep(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, rep.CronFired)
	require.Equal(t, 2, b.jobCount(t), "the tick EventBridge fired is the same job; the half-minute tick is new")
	// Delivered again by EventBridge (at-least-once): still the same job.
	ev, err = srv.HandleSchedule(b.ctx, controlplane.ScheduleEvent{Automation: hourly.ID, ScheduledTime: tick})
	require.NoError(t, err)
	require.False(t, ev.Submitted[0].Created)
	require.Equal(t, 2, b.jobCount(t))
	ticks, err := b.client.Queue().CronTicks(b.ctx)
	require.NoError(t, err)
	require.Equal(t, tick.Add(30*time.Second).UnixMilli(), ticks[halfMinute.ID])

	// Paused: the schedule is disabled. Deleted: it is gone.
	_, err = controlplane.PauseAutomation(b.ctx, b.client, hourly.ID, true)
	require.NoError(t, err)
	rep, err = srv.Sweep(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.SchedulesChanged)
	got, err = sc.GetSchedule(b.ctx, &scheduler.GetScheduleInput{Name: aws.String("cron-" + hourly.ID), GroupName: aws.String("runfleet-t1")})
	require.NoError(t, err)
	require.Equal(t, "DISABLED", string(got.State))
	_, err = controlplane.DeleteAutomation(b.ctx, b.client, hourly.ID)
	require.NoError(t, err)
	rep, err = srv.Sweep(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.SchedulesChanged)
	require.Empty(t, names())

	// A sync that fails (the group is gone) is reported by name, and the
	// sweep's other steps, cron ticks included, still run.
	broken := schedsync.New(moto, schedsync.Target{Mode: schedsync.Scheduler, Stack: "gone",
		FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:runfleet-gone-submit",
		RoleARN:     "arn:aws:iam::123456789012:role/runfleet-gone-scheduler"})
	srv, err = controlplane.New(controlplane.Config{Client: b.client, Schedules: broken, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	clk.add(30 * time.Second)
	rep, err = srv.Sweep(b.ctx)
	require.ErrorContains(t, err, "sync cron schedules: schedule group runfleet-gone does not exist")
	require.Equal(t, 1, rep.CronFired)
	require.Equal(t, 3, b.jobCount(t))
}

package workflows_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// TestEveryStepSurvivesAFault interrupts a runner's Redis calls one window at
// a time, at every position through a small job (claims, executions with
// subtasks, commits, acknowledgements, heartbeats), either before a call
// reaches Redis or by losing its reply. After each, a healthy runner finishes
// the job: it must complete with every task computed and nothing left
// queued or running.
func TestEveryStepSurvivesAFault(t *testing.T) {
	t.Parallel()
	for _, late := range []bool{false, true} {
		for pos := 0; pos < 36; pos++ {
			name := fmt.Sprintf("before/%d", pos)
			if late {
				name = fmt.Sprintf("reply-lost/%d", pos)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				faultyRun(t, pos, late)
			})
		}
	}
}

func faultyRun(t *testing.T, pos int, late bool) {
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	healthy, err := workflows.NewClient(ctx, workflows.WithRedisURL(r.URL()), quiet)
	require.NoError(t, err)
	defer healthy.Close()
	_, err = healthy.Clusters().Create(ctx, "main", "")
	require.NoError(t, err)

	faults := &testenv.Faults{}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer rdb.Close()
	rdb.AddHook(faults)
	faulty, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb), victimLog(t))
	require.NoError(t, err)
	victim, err := faulty.NewRunner(ctx, "main", benchtask.All()...)
	require.NoError(t, err)

	j, err := healthy.Jobs().Submit(ctx, "f", "main", &benchtask.FanOut{N: 5, Child: "Noop", Merge: true})
	require.NoError(t, err)
	if late {
		faults.LoseReplies(pos, 2)
	} else {
		faults.FailWindow(pos, 2)
	}
	fast := []workflows.RunOption{workflows.WithConcurrency(2), workflows.WithHeartbeatTTL(500 * time.Millisecond),
		workflows.WithReclaimInterval(20 * time.Millisecond), workflows.WithIdleWait(50 * time.Millisecond)}
	require.NoError(t, victim.RunAll(ctx, fast...))
	require.NotZero(t, faults.Failed(), "the fault window was reached")

	// Whatever the victim left behind (pending hints, held tasks, outbox
	// entries) is settled by a healthy runner: it reclaims the stopped
	// victim and republishes.
	rescuer, err := healthy.NewRunner(ctx, "main", benchtask.All()...)
	require.NoError(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		require.NoError(t, rescuer.RunAll(ctx, fast...))
		_, _ = healthy.Sweep(ctx)
		got, err := healthy.Jobs().Get(ctx, j.ID)
		require.NoError(t, err)
		if got.State == workflows.JobCompleted {
			break
		}
		if time.Now().After(deadline) {
			tasks, _ := healthy.Jobs().Tasks(ctx, j.ID)
			var lines []string
			for _, x := range tasks {
				lines = append(lines, fmt.Sprintf("task %d %s %s runner=%s attempts=%d losses=%d err=%q",
					x.Seq, x.Name, x.State, x.Runner, x.Attempts, x.Losses, x.Error))
			}
			t.Fatalf("job %s is %s after 30s (%d faults injected); victim %s, rescuer %s\n%s",
				j.ID, got.State, faults.Failed(), victim.ID(), rescuer.ID(), strings.Join(lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}

	got, err := healthy.Jobs().Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, int64(7), got.TaskCounts[workflows.TaskComputed])
	for _, st := range []string{workflows.TaskQueued, workflows.TaskRunning, workflows.TaskFailed} {
		require.Zero(t, got.TaskCounts[st], st)
	}
	tasks, err := healthy.Jobs().Tasks(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, tasks, 7)
	for _, x := range tasks {
		require.Equal(t, workflows.TaskComputed, x.State)
		require.True(t, x.Complete)
	}
}

// victimLog sends the faulty runner's log to the test output, shown when
// the test fails.
func victimLog(t *testing.T) workflows.ClientOption {
	return workflows.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})))
}

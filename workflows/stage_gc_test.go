package workflows_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

// failFunction is a go-redis hook that makes the first calls of one
// runfleet function fail, before they reach the real server or (late) after
// they ran there, as if the reply was lost.
type failFunction struct {
	name  string
	late  bool
	times int32
	seen  atomic.Int32
}

var errInjectedCall = errors.New("injected failure of a runfleet function call")

func (f *failFunction) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (f *failFunction) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if len(args) < 2 || !strings.EqualFold(cmd.Name(), "fcall") || args[1] != f.name || f.seen.Add(1) > f.times {
			return next(ctx, cmd)
		}
		if f.late {
			_ = next(ctx, cmd)
		}
		cmd.SetErr(errInjectedCall)
		return errInjectedCall
	}
}

func (f *failFunction) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// taskHashes counts the task records of a job in Redis (hashes and bucket
// fields), listed or not.
func taskHashes(t *testing.T, rdb *redis.Client, jobID string) int {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "rf:{j:"+jobID+"}:t:*").Result()
	require.NoError(t, err)
	// Computed tasks without children live in buckets of many.
	buckets, err := rdb.Keys(ctx, "rf:{j:"+jobID+"}:tb:*").Result()
	require.NoError(t, err)
	n := len(keys)
	for _, b := range buckets {
		fields, err := rdb.HKeys(ctx, b).Result()
		require.NoError(t, err)
		for _, f := range fields {
			if !strings.HasPrefix(f, "#") { // "#<ident>" counts records
				n++
			}
		}
	}
	return n
}

// TestStagedSubtasksOfAFailedStageAreDropped runs a task whose staging
// fails halfway (one rf_stage call runs but its reply is lost): the runner
// hands the execution back and runs it again, which commits a second copy
// of the set. The first copy is never listed; the sweep's stage GC deletes
// it and leaves the committed one.
func TestStagedSubtasksOfAFailedStageAreDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &failFunction{name: "rf_stage", late: true, times: 1}
	rdb.AddHook(hook)
	faulty, err := workflows.NewClient(b.ctx, workflows.WithRedisClient(rdb), victimLog(t))
	require.NoError(t, err)
	r, err := faulty.NewRunner(b.ctx, b.cluster, benchtask.All()...)
	require.NoError(t, err)

	const n = 2*200 + 50 // staged in chunks: more than one commit takes inline
	j := b.submit(t, &benchtask.FanOut{N: n, Child: "Noop"})
	require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(8)))
	got := b.job(t, j.ID)
	require.Equal(t, workflows.JobCompleted, got.State)
	tasks, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, tasks, 1+n)
	require.Equal(t, 2, tasks[0].Attempts, "the first execution was handed back")
	require.Greater(t, taskHashes(t, rdb, j.ID), 1+n, "the first attempt left staged chunks behind")

	dropped, err := b.client.Queue().DropAllAbandonedStages(b.ctx)
	require.NoError(t, err)
	require.Positive(t, dropped)
	require.Equal(t, 1+n, taskHashes(t, rdb, j.ID), "only the committed tasks are left")
	after, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, tasks, after)
}

var _ redis.Hook = (*failFunction)(nil)

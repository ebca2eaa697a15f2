package queue

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestClusterMetricsCountReadyRunningAndLiveRunners(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.RegisterIdentifiers(b.ctx, "c", []Identifier{b.parent, b.child}))
	for _, job := range []string{"j1", "j2", "j3"} {
		require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: job, Name: job, Cluster: "c", Task: b.parent, Input: []byte("{}")}))
	}
	// r1 holds one task; r2 is gone.
	hints, err := b.q.Read(b.ctx, "r1", []string{b.stream(b.parent)}, 1, -1)
	require.NoError(t, err)
	held, err := b.q.Claim(b.ctx, "r1", hints)
	require.NoError(t, err)
	require.Len(t, held, 1)
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: "r1"}, time.Minute, true))
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: "r2"}, time.Minute, true))
	require.NoError(t, b.q.Stopped(b.ctx, "c", "r2"))
	// A hint from long ago waits on the child stream.
	require.NoError(t, b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: b.stream(b.child), ID: "1000-0",
		Values: []string{"j", "old", "t", "0"}}).Err())

	m, err := b.q.ClusterMetrics(b.ctx, "c")
	require.NoError(t, err)
	require.Equal(t, "c", m.Cluster)
	require.Equal(t, map[string]int64{"Parent@v1.0": 2, "Child@v1.0": 1}, m.Ready)
	require.Equal(t, int64(3), m.ReadyTotal)
	require.Equal(t, int64(1), m.Running)
	require.Equal(t, int64(1), m.LiveRunners)
	require.Greater(t, m.OldestReadyAge, 50*365*24*time.Hour, "the oldest entry dates from 1970")
}

func TestClusterMetricsOfAnIdleClusterAreZero(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, err := ParseIdentifier("Unstarted", "v2.1")
	require.NoError(t, err)
	// One identifier has a stream and group, the other was registered but
	// no runner ever created its stream.
	require.NoError(t, b.q.RegisterIdentifiers(b.ctx, "c", []Identifier{b.parent, other}))

	m, err := b.q.ClusterMetrics(b.ctx, "c")
	require.NoError(t, err)
	require.Empty(t, m.Ready)
	require.Zero(t, m.ReadyTotal)
	require.Zero(t, m.Running)
	require.Zero(t, m.LiveRunners)
	require.Zero(t, m.OldestReadyAge)
}

func TestClusterMetricsCountReadyEntriesWhenRedisCannotTellTheLag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.q.RegisterIdentifiers(b.ctx, "c", []Identifier{b.parent}))
	var ids []string
	for i := range 3 {
		id, err := b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: b.stream(b.parent), Values: []string{"j", "x", "t", string(rune('0' + i))}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	// Deleting an undelivered entry leaves Redis unable to compute the lag.
	require.NoError(t, b.rdb.XDel(b.ctx, b.stream(b.parent), ids[1]).Err())
	groups, err := b.rdb.XInfoGroups(b.ctx, b.stream(b.parent)).Result()
	require.NoError(t, err)
	require.Equal(t, int64(-1), groups[0].Lag)

	m, err := b.q.ClusterMetrics(b.ctx, "c")
	require.NoError(t, err)
	require.Equal(t, int64(2), m.ReadyTotal)
}

func TestClusterMetricsCountHintsNoRunnerHasReadYet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A cluster scaled to zero: the task is declared, jobs wait, and no
	// runner ever created the stream's consumer group.
	idle, err := ParseIdentifier("Idle", "v1.0")
	require.NoError(t, err)
	require.NoError(t, b.q.RegisterIdentifiers(b.ctx, "c", []Identifier{idle}))
	for _, job := range []string{"j1", "j2"} {
		require.NoError(t, b.q.SubmitJob(b.ctx, SubmitJobParams{ID: job, Name: job, Cluster: "c", Task: idle, Input: []byte("{}")}))
	}

	m, err := b.q.ClusterMetrics(b.ctx, "c")
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"Idle@v1.0": 2}, m.Ready)
	require.Zero(t, m.Running)
}

package queue

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/rftype"
)

func TestListRunnersShowsLiveRunnersWithDevices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := time.UnixMilli(time.Now().UnixMilli())
	devs := []rftype.Device{{Index: 0, UUID: "GPU-a", Name: "A100", MemoryMiB: 81920}, {Index: 2}}
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: "gpu-1", Host: "h1", PID: 7, Started: started,
		Version: "v1.2.3", Concurrency: 2, Devices: devs}, time.Minute, true))
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: "dead", Host: "h0"}, time.Minute, true))
	require.NoError(t, b.q.Stopped(b.ctx, "c", "dead"))

	rs, err := b.q.ListRunners(b.ctx, "c")
	require.NoError(t, err)
	require.Len(t, rs, 1, "a stopped runner is not live")
	r := rs[0]
	require.Equal(t, "gpu-1", r.ID)
	require.Equal(t, "h1", r.Host)
	require.Equal(t, 7, r.PID)
	require.True(t, started.Equal(r.Started))
	require.Equal(t, "v1.2.3", r.Version)
	require.Equal(t, 2, r.Concurrency)
	require.Equal(t, devs, r.Devices)
	require.Equal(t, time.Minute, r.HeartbeatTTL)
	require.WithinDuration(t, time.Now(), r.LastBeat, 5*time.Second)
	require.WithinDuration(t, time.Now().Add(time.Minute), r.AliveUntil, 5*time.Second)

	// A beat that is not full leaves the entry as it was.
	require.NoError(t, b.q.Heartbeat(b.ctx, "c", RunnerInfo{ID: "gpu-1"}, time.Minute, false))
	rs, err = b.q.ListRunners(b.ctx, "c")
	require.NoError(t, err)
	require.Equal(t, devs, rs[0].Devices)

	_, err = b.q.ListRunners(b.ctx, "nope")
	require.ErrorIs(t, err, ErrClusterNotFound)
}

// Registry entries of runners from before version, concurrency, devices and
// ttl were recorded still read, with those fields zero.
func TestListRunnersReadsOlderEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := time.Now().Add(-time.Hour).UnixMilli()
	require.NoError(t, b.rdb.HSet(b.ctx, runnerKey("c", "old-1"), "streams", `["s"]`, "host", "vm-7", "pid", 42,
		"started", started).Err())
	require.NoError(t, b.rdb.ZAdd(b.ctx, runnersKey("c"), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: "old-1"}).Err())
	rs, err := b.q.ListRunners(b.ctx, "c")
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, RunnerInfo{ID: "old-1", Streams: []string{"s"}, Host: "vm-7", PID: 42, Started: time.UnixMilli(started),
		AliveUntil: rs[0].AliveUntil}, rs[0])
	require.True(t, rs[0].LastBeat.IsZero())
}

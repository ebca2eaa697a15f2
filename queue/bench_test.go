package queue

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

// BenchmarkCommit100kSubtasks measures committing one execution that
// submitted 100,000 subtasks (stage in chunks, commit, publish every hint),
// and reports the slowest Redis command seen meanwhile (SLOWLOG, every
// command over 100µs logged).
func BenchmarkCommit100kSubtasks(b *testing.B) {
	const n = 100_000
	r := testenv.NewRedis(b)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	q, err := New(ctx, rdb)
	require.NoError(b, err)
	_, err = q.CreateCluster(ctx, "bench", "")
	require.NoError(b, err)
	parent, _ := ParseIdentifier("Parent", "v1.0")
	child, _ := ParseIdentifier("Child", "v1.0")
	stream := StreamKey("bench", parent)
	require.NoError(b, q.EnsureGroups(ctx, []string{stream}))
	specs := make([]SubtaskSpec, n)
	for i := range specs {
		specs[i] = SubtaskSpec{Task: child, Cluster: "bench", Input: []byte(`{"tile":` + strconv.Itoa(i) + `}`)}
	}
	require.NoError(b, rdb.ConfigSet(ctx, "slowlog-log-slower-than", "100").Err())
	require.NoError(b, rdb.ConfigSet(ctx, "slowlog-max-len", "100000").Err())

	var total time.Duration
	var worst time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := "bench-" + strconv.Itoa(i)
		require.NoError(b, q.SubmitJob(ctx, SubmitJobParams{ID: id, Name: "x", Cluster: "bench", Task: parent, Input: []byte("{}")}))
		hints, err := q.Read(ctx, "r", []string{stream}, 1, -1)
		require.NoError(b, err)
		claimed, err := q.Claim(ctx, "r", hints)
		require.NoError(b, err)
		require.Len(b, claimed, 1)
		require.NoError(b, rdb.Do(ctx, "SLOWLOG", "RESET").Err())
		b.StartTimer()

		start := time.Now()
		c := Completion{JobID: id, Seq: 0, Attempt: claimed[0].Attempt, Subtasks: specs}
		require.NoError(b, q.Stage(ctx, "r", &c))
		res, err := q.Complete(ctx, "r", []Completion{c})
		require.NoError(b, err)
		require.NoError(b, res[0])
		total += time.Since(start)

		b.StopTimer()
		j, err := q.GetJob(ctx, id)
		require.NoError(b, err)
		require.Equal(b, int64(n), j.TaskCounts[TaskQueued])
		// Every subtask is named by exactly one hint (in runs of up to
		// HintRun per entry).
		msgs, err := rdb.XRange(ctx, StreamKey("bench", child), "-", "+").Result()
		require.NoError(b, err)
		named := map[int64]bool{}
		for _, h := range parseHints([]redis.XStream{{Stream: StreamKey("bench", child), Messages: msgs}}) {
			if h.JobID != id {
				continue
			}
			for seq := h.Seq; seq < h.Seq+h.N; seq++ {
				require.False(b, named[seq], "task %d named twice", seq)
				named[seq] = true
			}
		}
		require.Len(b, named, n)
		logs, err := rdb.SlowLogGet(ctx, -1).Result()
		require.NoError(b, err)
		for _, l := range logs {
			worst = max(worst, l.Duration)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "commit-ms")
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "subtasks/s")
	b.ReportMetric(float64(worst.Microseconds())/1000, "slowest-redis-ms")
}

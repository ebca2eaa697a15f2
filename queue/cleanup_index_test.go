package queue

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// The two indexes of object-store clean-ups read their members the same
// way: "<job id> <url>" with whether the job is still in Redis, and a
// member of another shape is dropped.
func TestCleanupIndexesSayWhichJobsRemain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.submitJob(t, "alive")
	require.NoError(t, b.rdb.SAdd(b.ctx, keyCacheGC, "alive s3://b/a", "gone s3://b/g", "malformed").Err())
	caches, err := b.q.CacheGCPending(b.ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []CacheGCEntry{{JobID: "gone", URL: "s3://b/g"}}, caches, "a job still in Redis waits for its archive")
	left, err := b.rdb.SMembers(b.ctx, keyCacheGC).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"alive s3://b/a", "gone s3://b/g"}, left)

	past := float64(time.Now().Add(-time.Minute).UnixMilli())
	require.NoError(t, b.rdb.ZAdd(b.ctx, keyPayloadPending, redis.Z{Score: past, Member: "alive s3://b/a"},
		redis.Z{Score: past, Member: "gone s3://b/g"}, redis.Z{Score: past, Member: "malformed"},
		redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "later s3://b/l"}).Err())
	uploads, err := b.q.PayloadUploadsExpired(b.ctx, time.Now(), 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []PayloadPendingEntry{{JobID: "alive", URL: "s3://b/a", JobExists: true},
		{JobID: "gone", URL: "s3://b/g"}}, uploads)
	n, err := b.rdb.ZScore(b.ctx, keyPayloadPending, "malformed").Result()
	require.ErrorIs(t, err, redis.Nil, "dropped, not %v", n)

	none, err := b.q.PayloadUploadsExpired(b.ctx, time.Now().Add(-time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, none)
}

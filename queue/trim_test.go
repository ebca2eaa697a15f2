package queue

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestTrimKeepsOldestPendingOfEveryConsumer: with many consumers holding
// entries, trimming stops at the oldest pending entry, whichever consumer
// holds it, and drops what every consumer has acknowledged before it.
func TestTrimKeepsOldestPendingOfEveryConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.stream(b.child)
	require.NoError(t, b.rdb.ConfigSet(b.ctx, "stream-node-max-entries", "4").Err())
	for i := range 200 {
		require.NoError(t, b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: s, Values: []string{"j", "x", "t", strconv.Itoa(i)}}).Err())
	}
	done, err := b.q.Read(b.ctx, "r0", []string{s}, 100, -1)
	require.NoError(t, err)
	require.NoError(t, b.q.Ack(b.ctx, done))
	// "r9" holds the oldest pending entry; 50 other consumers hold newer ones.
	oldest, err := b.q.Read(b.ctx, "r9", []string{s}, 1, -1)
	require.NoError(t, err)
	for i := range 50 {
		_, err := b.q.Read(b.ctx, "c"+strconv.Itoa(i), []string{s}, 1, -1)
		require.NoError(t, err)
	}
	require.NoError(t, b.q.TrimStreams(b.ctx, []string{s}))

	entries, err := b.rdb.XRange(b.ctx, s, "-", "+").Result()
	require.NoError(t, err)
	require.Less(t, len(entries), 110, "entries acknowledged by all are trimmed")
	require.GreaterOrEqual(t, len(entries), 100, "pending and unread entries are kept")
	require.Equal(t, oldest[0].ID, entries[len(entries)-100].ID, "the oldest pending entry and all after it are kept")
}

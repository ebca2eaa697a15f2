package backoff

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDelayDoublesUpToMaxAndResets(t *testing.T) {
	t.Parallel()
	b := New(10*time.Millisecond, 35*time.Millisecond)
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	require.Equal(t, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 35 * time.Millisecond, 35 * time.Millisecond}, got)
	b.Reset()
	require.Equal(t, 10*time.Millisecond, b.Delay())
}

func TestJitterStaysWithinTwentyPercent(t *testing.T) {
	t.Parallel()
	for range 1000 {
		d := Jitter(time.Second)
		require.GreaterOrEqual(t, d, 800*time.Millisecond)
		require.LessOrEqual(t, d, 1200*time.Millisecond)
	}
	require.Equal(t, time.Duration(0), Jitter(0))
}

func TestSleepReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := New(time.Hour, time.Hour)
	start := time.Now()
	b.Sleep(ctx)
	require.Less(t, time.Since(start), time.Second)
	require.Equal(t, time.Hour, b.Delay())
}

package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDemo runs the whole demo on a small survey, so that a change to the
// CLI or the SDK that breaks `go tool task demo` fails the tests too.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and starts runner processes")
	}
	t.Setenv("RUNFLEET_REDIS_URL", "") // always its own redis-server
	var out bytes.Buffer
	cfg := config{runners: 2, concurrency: 2, rows: 2, cols: 3, size: 32, seed: 7, timeout: time.Minute}
	err := run(t.Context(), cfg, &out)
	require.NoError(t, err, out.String())
	for _, want := range []string{
		"$ runfleet cluster create demo-",
		"$ runfleet job wait ",
		"$ runfleet job tasks ",
		`"tiles-demo" on cluster demo-`,
		": completed\n",
		"tasks        8 computed\n",
		"tiles        6 (2x3) of 32x32 px, seed 7",
		"pixels       6,144,",
		"runners: stopped with SIGTERM",
		"redis: stopped",
	} {
		require.Contains(t, out.String(), want)
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	require.Equal(t, "0", thousands(0))
	require.Equal(t, "999", thousands(999))
	require.Equal(t, "1,000", thousands(1000))
	require.Equal(t, "7,077,888", thousands(7077888))
	require.Equal(t, "2m", durFlag(2*time.Minute))
	require.Equal(t, "1m30s", durFlag(90*time.Second))
	require.Equal(t, "1h", durFlag(time.Hour))
	require.Equal(t, "<1ms", dur(300*time.Microsecond))
	require.Equal(t, "1.235s", dur(1234567*time.Microsecond))
	require.Equal(t, "redis://***@h:6379/0", redactURL("redis://u:secret@h:6379/0"))
	require.Equal(t, "redis://h:6379/0", redactURL("redis://h:6379/0"))
	require.Equal(t, []string{"job", "'{\"a\":1}'", "'it'\\''s'"}, quoteArgs([]string{"job", `{"a":1}`, "it's"}))
}

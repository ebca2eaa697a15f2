package testenv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRedis runs against either backend (RUNFLEET_TESTENV): a killed
// server stops answering, and a restarted one answers at the same address.
func TestRedis(t *testing.T) {
	t.Parallel()
	r := NewRedis(t, "--maxmemory-policy", "noeviction")
	require.NoError(t, ping(r.Addr))
	require.Equal(t, "redis://"+r.Addr+"/0", r.URL())

	r.Kill()
	require.Error(t, ping(r.Addr), "killed")

	require.NoError(t, r.Restart(t.Context()))
	require.NoError(t, ping(r.Addr), "restarted at the same address")

	r.Stop()
	require.Error(t, ping(r.Addr), "stopped")
}

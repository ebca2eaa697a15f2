package events

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
)

func TestTwoGatewaysFireEachCronTickOnce(t *testing.T) {
	t.Parallel()
	requireServers(t, false)
	f := newFleet(t, controlplane.TokenSpec{})
	a, err := controlplane.CreateAutomation(context.Background(), f.wc, controlplane.Automation{
		Name: "heartbeat", Cluster: cluster, Task: "Noop", Version: benchtask.Version, Cron: "@every 1s"})
	require.NoError(t, err)
	// Two gateways, each with its own Redis connections, checking ten
	// times per tick: both see every tick due and both submit it.
	_, stop1 := f.startGateway(t, 100*time.Millisecond)
	_, stop2 := f.startGateway(t, 100*time.Millisecond)

	require.Eventually(t, func() bool { return len(f.jobs(t)) >= 4 }, 30*time.Second, 50*time.Millisecond,
		"a per-second schedule makes jobs")
	stop1()
	stop2()

	jobs := f.jobs(t)
	seen := map[time.Time]string{}
	for _, j := range jobs {
		stamp, ok := strings.CutPrefix(j.Name, a.Name+" ")
		require.True(t, ok, "job name %q is the automation's name and the tick", j.Name)
		tick, err := time.Parse(time.RFC3339, stamp)
		require.NoError(t, err, "job name %q ends with the tick in RFC 3339", j.Name)
		require.Equal(t, tick.Truncate(time.Second), tick, "ticks are whole seconds")
		require.False(t, tick.Before(a.CreatedAt), "the first tick is after the automation's creation")
		require.NotContains(t, seen, tick, "tick %s made jobs %s and %s", stamp, seen[tick], j.ID)
		seen[tick] = j.ID
	}

	// Both gateways usually see a tick before either records it as fired;
	// a gateway that lags behind fires it once more. Either way the tick's
	// job is found, not made again.
	srv, err := controlplane.New(controlplane.Config{Client: newClient(t, f.redis), Logger: testLogger(t)})
	require.NoError(t, err)
	for tick, id := range seen {
		rep, err := srv.HandleSchedule(t.Context(), controlplane.ScheduleEvent{Automation: a.ID, ScheduledTime: tick})
		require.NoError(t, err)
		require.Len(t, rep.Submitted, 1)
		require.Equal(t, id, rep.Submitted[0].JobID)
		require.False(t, rep.Submitted[0].Created)
	}
	require.Len(t, f.jobs(t), len(jobs))
}

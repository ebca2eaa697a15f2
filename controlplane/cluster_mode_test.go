package controlplane_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// TestControlPlaneRunsOnRedisCluster goes through every control-plane
// record on a three-master Redis Cluster: a step touching keys of two
// slots would fail with CROSSSLOT.
func TestControlPlaneRunsOnRedisCluster(t *testing.T) {
	t.Parallel()
	rc := testenv.NewRedisCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer rdb.Close()
	c, err := workflows.NewClient(ctx, workflows.WithRedisClient(rdb),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	_, err = c.Clusters().Create(ctx, "dev", "")
	require.NoError(t, err)
	require.NoError(t, c.Clusters().Declare(ctx, "dev", workflows.NewTaskIdentifier("Noop", "v1.0")))

	_, secret, err := controlplane.CreateToken(ctx, c, controlplane.TokenSpec{Name: "ci", Scope: controlplane.ScopeSubmit})
	require.NoError(t, err)
	_, _, err = controlplane.CreateToken(ctx, c, controlplane.TokenSpec{Name: "ci", Scope: controlplane.ScopeRead})
	require.ErrorContains(t, err, "already exists")

	srv, err := controlplane.New(controlplane.Config{Client: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	api := httptest.NewServer(srv.Handler())
	defer api.Close()
	post := func() int {
		req, _ := http.NewRequestWithContext(ctx, "POST", api.URL+"/v1/jobs",
			strings.NewReader(`{"cluster":"dev","name":"n","task":"Noop","version":"v1.0"}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Idempotency-Key", "once")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 201, post())
	require.Equal(t, 200, post())

	a, err := controlplane.CreateAutomation(ctx, c, controlplane.Automation{Name: "in", Cluster: "dev", Task: "Noop",
		Version: "v1.0", Storage: "s3://in/"})
	require.NoError(t, err)
	cron, err := controlplane.CreateAutomation(ctx, c, controlplane.Automation{Name: "tick", Cluster: "dev", Task: "Noop",
		Version: "v1.0", Cron: "@every 1s"})
	require.NoError(t, err)
	_, err = controlplane.PauseAutomation(ctx, c, a.Name, true)
	require.NoError(t, err)
	_, err = srv.HandleSchedule(ctx, controlplane.ScheduleEvent{Automation: cron.ID, ScheduledTime: time.Now()})
	require.NoError(t, err)
	_, err = srv.FireDueTicks(ctx)
	require.NoError(t, err)
	var ev = s3Event("in", "k", `"e"`, "")
	_, err = srv.HandleS3Event(ctx, ev)
	require.NoError(t, err)

	for _, name := range []string{a.Name, cron.Name} {
		_, err = controlplane.DeleteAutomation(ctx, c, name)
		require.NoError(t, err)
	}
	all, err := controlplane.ListAutomations(ctx, c)
	require.NoError(t, err)
	require.Empty(t, all)
	_, err = controlplane.RevokeToken(ctx, c, "ci")
	require.NoError(t, err)
	toks, err := controlplane.ListTokens(ctx, c)
	require.NoError(t, err)
	require.Empty(t, toks)
	b, _ := json.Marshal(toks)
	require.Equal(t, "[]", string(b))
}

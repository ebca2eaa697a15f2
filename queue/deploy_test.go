package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

// releaseID is a made-up release id derived from s.
func releaseID(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func ids(t *testing.T, specs ...string) []Identifier {
	t.Helper()
	out := make([]Identifier, 0, len(specs)/2)
	for i := 0; i+1 < len(specs); i += 2 {
		id, err := ParseIdentifier(specs[i], specs[i+1])
		require.NoError(t, err)
		out = append(out, id)
	}
	return out
}

// signal waits up to 2 s for a watch signal.
func signal(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		require.True(t, ok, "the watch channel closed")
	case <-time.After(2 * time.Second):
		t.Fatal("no watch signal within 2s")
	}
}

func noSignal(t *testing.T, ch <-chan struct{}, wait time.Duration) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal("unexpected watch signal")
	case <-time.After(wait):
	}
}

func TestDeployLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx

	rev, deps, err := b.q.Deployments(ctx, "c")
	require.NoError(t, err)
	require.Zero(t, rev)
	require.Empty(t, deps)

	at := time.UnixMilli(1_700_000_000_123).UTC()
	r1 := releaseID("tiles-1")
	res, err := b.q.Deploy(ctx, "c", Deployment{Workflow: "tiles", Release: r1,
		Tasks: ids(t, "Resize", "v1.2", "Crop", "v0.1"), DeployedAt: at, By: "ana@host"})
	require.NoError(t, err)
	require.Equal(t, DeployResult{Previous: "", Revision: 1}, res)
	require.True(t, res.Changed(r1))

	known, err := b.q.RegisteredIdentifiers(ctx, "c")
	require.NoError(t, err)
	require.ElementsMatch(t, ids(t, "Resize", "v1.2", "Crop", "v0.1"), known, "jobs can be submitted right after deploy")

	rev, deps, err = b.q.Deployments(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, int64(1), rev)
	require.Equal(t, []Deployment{{Workflow: "tiles", Release: r1, Tasks: ids(t, "Crop", "v0.1", "Resize", "v1.2"),
		DeployedAt: at, By: "ana@host"}}, deps)

	// The same release again changes nothing.
	res, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "tiles", Release: r1, Tasks: ids(t, "Resize", "v1.2", "Crop", "v0.1")})
	require.NoError(t, err)
	require.Equal(t, DeployResult{Previous: r1, Revision: 1}, res)
	require.False(t, res.Changed(r1))

	// A new release replaces it; it may move the same task to a new minor.
	r2 := releaseID("tiles-2")
	res, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "tiles", Release: r2, Tasks: ids(t, "Resize", "v1.3")})
	require.NoError(t, err)
	require.Equal(t, DeployResult{Previous: r1, Revision: 2}, res)

	// Another workflow with other tasks, and another major of the same name.
	r3 := releaseID("thumbs-1")
	_, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "thumbs", Release: r3, Tasks: ids(t, "Resize", "v2.0", "Thumb", "v1.0")})
	require.NoError(t, err)
	rev, deps, err = b.q.Deployments(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, int64(3), rev)
	require.Len(t, deps, 2)
	require.Equal(t, "thumbs", deps[0].Workflow)
	require.Equal(t, r2, deps[1].Release)
	require.Equal(t, ids(t, "Resize", "v1.3"), deps[1].Tasks)
	require.WithinDuration(t, time.Now(), deps[1].DeployedAt, time.Minute, "DeployedAt defaults to now")

	rel, rev, err := b.q.Undeploy(ctx, "c", "tiles")
	require.NoError(t, err)
	require.Equal(t, r2, rel)
	require.Equal(t, int64(4), rev)
	_, _, err = b.q.Undeploy(ctx, "c", "tiles")
	require.ErrorIs(t, err, ErrNotDeployed)
	require.EqualError(t, err, `workflow is not deployed: workflow "tiles" has no deployment in cluster "c"`)

	rev, deps, err = b.q.Deployments(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, int64(4), rev)
	require.Len(t, deps, 1)
	require.Equal(t, "thumbs", deps[0].Workflow)
}

func TestDeployConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	a1, b1 := releaseID("a"), releaseID("b")
	_, err := b.q.Deploy(ctx, "c", Deployment{Workflow: "alpha", Release: a1, Tasks: ids(t, "Other", "v3.0", "Resize", "v1.2")})
	require.NoError(t, err)

	_, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "beta", Release: b1, Tasks: ids(t, "Zed", "v1.0", "Resize", "v1.5")})
	require.ErrorIs(t, err, ErrDeploymentConflict)
	msg := err.Error()
	for _, want := range []string{`workflow "beta"`, b1, `workflow "alpha"`, a1, "Resize@v1.5", "Resize@v1.2", `cluster "c"`} {
		require.Contains(t, msg, want)
	}

	rev, deps, err := b.q.Deployments(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, int64(1), rev, "a refused deployment changes nothing")
	require.Len(t, deps, 1)
	known, err := b.q.RegisteredIdentifiers(ctx, "c")
	require.NoError(t, err)
	require.NotContains(t, known, ids(t, "Zed", "v1.0")[0])

	// Names with "@" are parsed from the right.
	_, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "gamma", Release: releaseID("g"), Tasks: ids(t, "a@b", "v1.0")})
	require.NoError(t, err)
	_, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "delta", Release: releaseID("d"), Tasks: ids(t, "a@b", "v1.9")})
	require.ErrorIs(t, err, ErrDeploymentConflict)
	require.Contains(t, err.Error(), "a@b@v1.0 of workflow \"gamma\"")
	_, err = b.q.Deploy(ctx, "c", Deployment{Workflow: "delta", Release: releaseID("d"), Tasks: ids(t, "a", "v1.0")})
	require.NoError(t, err)
}

func TestDeployRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	good := Deployment{Workflow: "wf", Release: releaseID("x"), Tasks: ids(t, "T", "v1.0")}

	_, err := b.q.Deploy(ctx, "nope", good)
	require.ErrorIs(t, err, ErrClusterNotFound)
	require.Contains(t, err.Error(), `"nope"`)
	_, _, err = b.q.Undeploy(ctx, "nope", "wf")
	require.ErrorIs(t, err, ErrClusterNotFound)
	_, _, err = b.q.Deployments(ctx, "nope")
	require.ErrorIs(t, err, ErrClusterNotFound)

	for name, d := range map[string]Deployment{
		"workflow slug": {Workflow: "Bad_Slug", Release: good.Release, Tasks: good.Tasks},
		"release id":    {Workflow: "wf", Release: "abc", Tasks: good.Tasks},
		"no task":       {Workflow: "wf", Release: good.Release},
		"twice":         {Workflow: "wf", Release: good.Release, Tasks: ids(t, "T", "v1.0", "T", "v1.0")},
		"nul":           {Workflow: "wf", Release: good.Release, Tasks: []Identifier{{Name: "a\x00b", Major: 1}}},
	} {
		_, err := b.q.Deploy(ctx, "c", d)
		require.ErrorIs(t, err, ErrInvalidDeployment, name)
		require.Contains(t, err.Error(), map[string]string{"workflow slug": `"Bad_Slug"`, "release id": `"abc"`,
			"no task": "serves no task", "twice": "T@v1.0 is listed twice", "nul": "without NUL"}[name], name)
	}
	rev, deps, err := b.q.Deployments(ctx, "c")
	require.NoError(t, err)
	require.Zero(t, rev)
	require.Empty(t, deps)
}

func TestWatchDeployments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	ch := b.q.WatchDeployments(ctx, "c")
	signal(t, ch) // subscribed
	noSignal(t, ch, 50*time.Millisecond)

	start := time.Now()
	_, err := b.q.Deploy(b.ctx, "c", Deployment{Workflow: "wf", Release: releaseID("1"), Tasks: ids(t, "T", "v1.0")})
	require.NoError(t, err)
	signal(t, ch)
	t.Logf("deploy seen after %s", time.Since(start))

	// Another cluster's changes are not announced here.
	_, err = b.q.CreateCluster(b.ctx, "other", "")
	require.NoError(t, err)
	_, err = b.q.Deploy(b.ctx, "other", Deployment{Workflow: "wf", Release: releaseID("1"), Tasks: ids(t, "T", "v1.0")})
	require.NoError(t, err)
	noSignal(t, ch, 100*time.Millisecond)

	// Many changes while nobody reads coalesce into one pending signal.
	for i := range 5 {
		_, err = b.q.Deploy(b.ctx, "c", Deployment{Workflow: "wf", Release: releaseID(string(rune('a' + i))), Tasks: ids(t, "T", "v1.0")})
		require.NoError(t, err)
	}
	_, _, err = b.q.Undeploy(b.ctx, "c", "wf")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	signal(t, ch)
	noSignal(t, ch, 50*time.Millisecond)

	// A dropped subscription is resubscribed and signalled, since an
	// announcement may have been lost meanwhile.
	require.NoError(t, b.rdb.ClientKillByFilter(b.ctx, "TYPE", "pubsub").Err())
	signal(t, ch)

	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			_, ok = <-ch
		}
		require.False(t, ok, "the channel closes when ctx ends")
	case <-time.After(2 * time.Second):
		t.Fatal("the watch channel did not close")
	}
}

// TestDeploymentsOnRedisCluster proves the deployment steps stay on one slot
// and announcements reach watchers connected to any node.
func TestDeploymentsOnRedisCluster(t *testing.T) {
	t.Parallel()
	rc := testenv.NewRedisCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer rdb.Close()
	q, err := New(ctx, rdb)
	require.NoError(t, err)
	slugs := []string{"main", "gpu", "edge", "eu-1", "us-2"}
	var watches []<-chan struct{}
	for _, slug := range slugs {
		_, err := q.CreateCluster(ctx, slug, "")
		require.NoError(t, err)
		ch := q.WatchDeployments(ctx, slug)
		signal(t, ch)
		watches = append(watches, ch)
	}
	for i, slug := range slugs {
		res, err := q.Deploy(ctx, slug, Deployment{Workflow: "wf", Release: releaseID(slug), Tasks: ids(t, "T", "v1.0")})
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Revision)
		signal(t, watches[i])
		_, err = q.Deploy(ctx, slug, Deployment{Workflow: "other", Release: releaseID(slug), Tasks: ids(t, "T", "v1.1")})
		require.ErrorIs(t, err, ErrDeploymentConflict)
		rev, deps, err := q.Deployments(ctx, slug)
		require.NoError(t, err)
		require.Equal(t, int64(1), rev)
		require.Len(t, deps, 1)
		known, err := q.RegisteredIdentifiers(ctx, slug)
		require.NoError(t, err)
		require.Equal(t, ids(t, "T", "v1.0"), known)
		rel, _, err := q.Undeploy(ctx, slug, "wf")
		require.NoError(t, err)
		require.Equal(t, releaseID(slug), rel)
		signal(t, watches[i])
	}
}

// TestWatchSurvivesRedisRestart: announcements made while Redis was away
// are lost, so the watcher signals once it is subscribed again.
func TestWatchSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	q, err := New(ctx, rdb)
	require.NoError(t, err)
	ch := q.WatchDeployments(ctx, "c")
	signal(t, ch)

	r.Kill()
	require.NoError(t, r.Restart(ctx))
	select {
	case _, ok := <-ch:
		require.True(t, ok)
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after Redis came back")
	}
}

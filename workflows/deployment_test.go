package workflows_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

func TestDeployments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dc := b.client.Deployments()
	watch := dc.Watch(b.ctx, b.cluster)
	select {
	case <-watch:
	case <-time.After(2 * time.Second):
		t.Fatal("no signal once subscribed")
	}

	r1, r2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	tasks := []workflows.TaskIdentifier{{Name: "Noop", Version: "v1.0"}}
	prev, err := dc.Deploy(b.ctx, b.cluster, workflows.Deployment{Workflow: "bench", Release: r1, Tasks: tasks})
	require.NoError(t, err)
	require.Empty(t, prev)
	select {
	case <-watch:
	case <-time.After(2 * time.Second):
		t.Fatal("no signal after deploy")
	}

	// Jobs for the deployed tasks are accepted at once.
	_, err = b.client.Jobs().SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "n", Cluster: b.cluster, Task: tasks[0]})
	require.NoError(t, err)

	prev, err = dc.Deploy(b.ctx, b.cluster, workflows.Deployment{Workflow: "bench", Release: r2, Tasks: tasks, By: "ci@runner"})
	require.NoError(t, err)
	require.Equal(t, r1, prev)

	rev, deps, err := dc.List(b.ctx, b.cluster)
	require.NoError(t, err)
	require.Equal(t, int64(2), rev)
	require.Len(t, deps, 1)
	require.Equal(t, workflows.Deployment{Workflow: "bench", Release: r2, Tasks: tasks, DeployedAt: deps[0].DeployedAt, By: "ci@runner"}, deps[0])
	require.WithinDuration(t, time.Now(), deps[0].DeployedAt, time.Minute)

	_, err = dc.Deploy(b.ctx, b.cluster, workflows.Deployment{Workflow: "other", Release: r1,
		Tasks: []workflows.TaskIdentifier{{Name: "Noop", Version: "v1.4"}}})
	require.ErrorIs(t, err, workflows.ErrDeploymentConflict)
	_, err = dc.Deploy(b.ctx, "nope", workflows.Deployment{Workflow: "bench", Release: r1, Tasks: tasks})
	require.ErrorIs(t, err, workflows.ErrClusterNotFound)
	_, err = dc.Deploy(b.ctx, b.cluster, workflows.Deployment{Workflow: "bench", Release: r1,
		Tasks: []workflows.TaskIdentifier{{Name: "Noop", Version: "1.0"}}})
	require.ErrorIs(t, err, workflows.ErrInvalidTask)

	rel, err := dc.Undeploy(b.ctx, b.cluster, "bench")
	require.NoError(t, err)
	require.Equal(t, r2, rel)
	_, err = dc.Undeploy(b.ctx, b.cluster, "bench")
	require.ErrorIs(t, err, workflows.ErrNotDeployed)
	_, _, err = dc.List(b.ctx, "nope")
	require.ErrorIs(t, err, workflows.ErrClusterNotFound)
}

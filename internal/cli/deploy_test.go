package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWorkflowDeployAndUndeploy(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	f.cluster("dev")
	p1, id1 := f.artifact("bench", "one", "Noop@v1.0")
	p2, id2 := f.artifact("bench", "two", "Noop@v1.1", "Sleep@v1.0")
	f.wfOK("publish", p1)
	f.wfOK("publish", p2)

	r := f.ok("cluster", "deployments", "dev")
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "nothing is deployed to cluster dev")

	r = f.wfOK("deploy", "--cluster", "dev", "--workflow", "bench", "--release", id1[:10])
	require.Equal(t, "deployed workflow bench release "+id1[:12]+" to cluster dev\n", r.stdout)
	// The tasks are registered: jobs can be submitted right away.
	r = f.ok("job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0")
	require.NotEmpty(t, strings.TrimSpace(r.stdout))

	r = f.wfOK("deploy", "--cluster", "dev", "--workflow", "bench", "--latest")
	require.Equal(t, "deployed workflow bench release "+id2[:12]+" to cluster dev, replacing release "+id1[:12]+"\n", r.stdout)
	r = f.wfOK("deploy", "--cluster", "dev", "--workflow", "bench", "--release", id2, "--json")
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, id2, out["previous"])
	require.Equal(t, false, out["changed"])
	r = f.wfOK("deploy", "--cluster", "dev", "--workflow", "bench", "--latest")
	require.Contains(t, r.stdout, "is already deployed to cluster dev; nothing changed")

	r = f.ok("cluster", "deployments", "dev")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	require.Regexp(t, `^WORKFLOW\s+RELEASE\s+TASKS\s+DEPLOYED\s+BY$`, lines[0])
	require.Regexp(t, `^bench\s+`+id2[:12]+`\s+Noop@v1.1, Sleep@v1.0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\S+@\S+$`, lines[1])
	var list struct {
		Revision    int64            `json:"revision"`
		Deployments []map[string]any `json:"deployments"`
	}
	require.NoError(t, json.Unmarshal([]byte(f.ok("cluster", "deployments", "dev", "--json").stdout), &list))
	require.Equal(t, int64(2), list.Revision)
	require.Len(t, list.Deployments, 1)
	require.Equal(t, id2, list.Deployments[0]["release"])
	require.Equal(t, []any{map[string]any{"name": "Noop", "version": "v1.1"}, map[string]any{"name": "Sleep", "version": "v1.0"}},
		list.Deployments[0]["tasks"])

	r = f.wfOK("undeploy", "--cluster", "dev", "--workflow", "bench")
	require.Equal(t, "undeployed workflow bench (release "+id2[:12]+") from cluster dev\n", r.stdout)
	r = f.wf("undeploy", "--cluster", "dev", "--workflow", "bench")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: workflow is not deployed: workflow \"bench\" has no deployment in cluster \"dev\"\n"+
		"hint: see what is deployed with: runfleet cluster deployments dev\n", r.stderr)
	require.Equal(t, "[]", strings.TrimSpace(mustField(t, f.ok("cluster", "deployments", "dev", "--json").stdout, "deployments")))

	// Releases that are not in the store are refused before Redis is touched.
	r = f.wf("deploy", "--cluster", "dev", "--workflow", "bench", "--release", strings.Repeat("0", 12))
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `release not found: workflow "bench" has no release 000000000000`)
	r = f.wf("deploy", "--cluster", "dev", "--workflow", "nothing", "--latest")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `workflow "nothing" has no published release`)
}

// mustField returns one top-level field of a JSON object, re-encoded.
func mustField(t *testing.T, doc, field string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(doc), &m), doc)
	return string(m[field])
}

func TestWorkflowDeployConflict(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	f.cluster("dev")
	pa, ida := f.artifact("tiles", "one", "Resize@v1.2", "Crop@v0.1")
	pb, idb := f.artifact("thumbs", "one", "Resize@v1.0", "Thumb@v1.0")
	f.wfOK("publish", pa)
	f.wfOK("publish", pb)
	f.wfOK("deploy", "--cluster", "dev", "--workflow", "tiles", "--latest")

	r := f.wf("deploy", "--cluster", "dev", "--workflow", "thumbs", "--latest")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, `runfleet: deployment conflict: cannot deploy workflow "thumbs" release `+idb+
		` to cluster "dev": its task Resize@v1.0 would claim the same tasks as Resize@v1.2 of workflow "tiles" release `+ida+
		`, deployed there (same name and major version); undeploy "tiles" from "dev" first, or give one of the tasks another major version`+"\n", r.stderr)
	require.Empty(t, r.stdout)

	r = f.ok("cluster", "deployments", "dev")
	require.NotContains(t, r.stdout, "thumbs", "nothing changed")
}

func TestWorkflowDeployUnknownCluster(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	p, _ := f.artifact("tiles", "one", "Resize@v1.2")
	f.wfOK("publish", p)
	r := f.wf("deploy", "--cluster", "nope", "--workflow", "tiles", "--latest")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: deploy workflow \"tiles\": cluster not found: \"nope\" (create it with `runfleet cluster create nope`)\n", r.stderr)
	r = f.wf("undeploy", "--cluster", "nope", "--workflow", "tiles")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `cluster not found: "nope"`)
	r = f.run("cluster", "deployments", "nope")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `cluster not found: "nope"`)
}

// TestWorkflowFromProject runs the commands in a project directory: the
// workflow, the default artifact and deploy targets come from
// runfleet.workflow.toml. Not parallel: it changes the working directory.
func TestWorkflowFromProject(t *testing.T) {
	f := newReleaseFixture(t)
	f.cluster("bench-dev")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "runfleet.workflow.toml"),
		[]byte("workflow = \"bench\"\n\n[targets.dev]\ncluster = \"bench-dev\"\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dist"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	_, id := packArtifact(t, filepath.Join(dir, "dist"), "bench", "x", "Noop@v1.0")
	require.NoError(t, os.Rename(filepath.Join(dir, "dist", "bench-x.tar.zst"), filepath.Join(dir, "dist", "bench.tar.zst")))
	t.Chdir(filepath.Join(dir, "sub"))

	r := f.wfOK("publish")
	require.Equal(t, id+"\n", r.stdout)
	r = f.wfOK("deploy", "--target", "dev", "--latest")
	require.Equal(t, "deployed workflow bench release "+id[:12]+" to cluster bench-dev\n", r.stdout)
	r = f.wf("deploy", "--target", "prod", "--latest")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `unknown deploy target "prod"`)
	r = f.wfOK("undeploy", "--target", "dev")
	require.Contains(t, r.stdout, "undeployed workflow bench")
}

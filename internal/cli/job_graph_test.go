package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJobGraphFormats(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	// A root, two Noops and a merge Noop waiting for both.
	id := f.submit("dev", "FanOut", `{"n": 2, "merge": true}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	mermaid := f.ok("job", "graph", id, "--format", "mermaid").stdout
	require.Equal(t, `flowchart TD
  %% test-fanout `+id+` — completed, 4 tasks
  t0["FanOut #35;0<br/>computed"]
  t1["Noop #35;1<br/>computed"]
  t2["Noop #35;2<br/>computed"]
  t3["Noop #35;3<br/>computed"]
  t0 --> t1
  t0 --> t2
  t0 --> t3
  t1 -.-> t3
  t2 -.-> t3
  classDef computed fill:#e8f5e9,stroke:#43a047,stroke-width:2px
  class t0,t1,t2,t3 computed
`, mermaid)

	dot := f.ok("job", "graph", id, "--format", "dot").stdout
	require.True(t, strings.HasPrefix(dot, "digraph job {\n"), dot)
	require.Contains(t, dot, `t2 -> t3 [color="#3949ab", style=dashed`)

	svg := f.ok("job", "graph", id).stdout
	require.True(t, strings.HasPrefix(svg, `<svg xmlns="http://www.w3.org/2000/svg"`), "svg is the default")
	require.Equal(t, svg, f.ok("job", "graph", id, "--format", "svg").stdout, "the same job gives the same bytes")
}

func TestJobGraphOutWritesAFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.runner("dev")
	id := f.submit("dev", "FanOut", `{"n": 30}`)
	f.ok("job", "wait", id, "--interval", "20ms", "--timeout", "30s")

	dir := t.TempDir()
	out := filepath.Join(dir, "job.svg")
	require.NoError(t, os.WriteFile(out, []byte("old"), 0o644))
	r := f.ok("job", "graph", id, "--out", out)
	require.Empty(t, r.stdout)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(b), "<svg"), string(b[:min(len(b), 40)]))
	require.Contains(t, string(b), "Noop ×30", "30 siblings are one node")
	require.Contains(t, string(b), "30 computed")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")
}

func TestJobGraphErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.run("job", "graph", "no-such-job")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: job not found: \"no-such-job\"\nhint: list recent jobs with: runfleet job list\n", r.stderr)

	r = f.run("job", "graph", "no-such-job", "--format", "png")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `unknown --format "png": want one of svg, dot, mermaid`)

	r = f.run("job", "graph")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "missing ID")
}

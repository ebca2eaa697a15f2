package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/internal/project"
)

// runWorkflowCmd runs `runfleet workflow init|build ARGS` through a minimal
// command tree holding just those two commands, reported like Main does.
func runWorkflowCmd(t *testing.T, args ...string) result {
	t.Helper()
	a, out, errOut := testApp("")
	root := &cobra.Command{Use: "runfleet", Args: groupArgs, RunE: groupRunE, SilenceErrors: true, SilenceUsage: true}
	root.SetOut(a.out)
	root.SetErr(a.err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	wf := &cobra.Command{Use: "workflow", Args: groupArgs, RunE: groupRunE}
	wf.AddCommand(a.workflowInitCmd(), a.workflowBuildCmd())
	root.AddCommand(wf)
	root.SetArgs(append([]string{"workflow"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, err := root.ExecuteContextC(ctx)
	return result{code: a.report(cmd, err), stdout: out.String(), stderr: errOut.String()}
}

// sdkDir is the runfleet module's source directory.
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, "go.mod"))
	return dir
}

func TestWorkflowInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tiles")
	r := runWorkflowCmd(t, "init", "tiles", "--dir", dir, "--sdk", sdkDir(t), "--cluster", "tiles-dev", "--module", "example.com/me/tiles")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "created workflow tiles in "+dir+":\n  runfleet.workflow.toml\n  main.go\n  go.mod\n  .gitignore\n")
	require.Contains(t, r.stdout, "go mod tidy")
	require.Contains(t, r.stdout, "go run . -cluster tiles-dev")

	cfg, err := project.Load(filepath.Join(dir, project.ConfigFile))
	require.NoError(t, err)
	require.Equal(t, "tiles", cfg.Workflow)
	cl, err := cfg.Cluster("dev")
	require.NoError(t, err)
	require.Equal(t, "tiles-dev", cl)
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	require.Contains(t, string(goMod), "module example.com/me/tiles\n")

	// Never overwrites.
	r = runWorkflowCmd(t, "init", "tiles", "--dir", dir, "--sdk", sdkDir(t))
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: workflow project already exists in "+dir)
	require.Contains(t, r.stderr, "hint: create the project in a new directory with --dir DIR")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init"}, "missing SLUG"},
		{[]string{"init", "Tiles"}, `invalid workflow slug "Tiles"`},
		{[]string{"init", "tiles", "--cluster", "Dev"}, `--cluster: invalid cluster slug "Dev"`},
		{[]string{"init", "tiles", "--module", "bad module", "--dir", filepath.Join(t.TempDir(), "m")}, `module path "bad module"`},
		{[]string{"init", "tiles", "--bogus"}, "unknown flag: --bogus"},
	} {
		r := runWorkflowCmd(t, tc.args...)
		require.Equal(t, ExitUsage, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.args)
	}
}

// describeFixture is a stdlib-only main package serving describe mode by
// hand, standing in for a workflow built with the SDK.
const describeFixture = `package main

import "os"

func main() {
	if os.Getenv("RUNFLEET_MODE") == "describe" {
		os.Stdout.WriteString(` + "`" + `{"protocol":1,"tasks":[{"name":"Greet","version":"v1.0"}]}` + "`" + `)
		return
	}
	os.Exit(2)
}
`

func TestWorkflowBuild(t *testing.T) {
	t.Parallel()
	// One platform, the host's when it is supported, to build as little as
	// possible.
	platform := runtime.GOOS + "/" + runtime.GOARCH
	if platform != artifacts.PlatformLinuxARM64 {
		platform = artifacts.PlatformLinuxAMD64
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":           "module example.com/fixture\n\ngo 1.26\n",
		"main.go":          describeFixture,
		project.ConfigFile: "workflow = \"fixture\"\nplatforms = [\"" + platform + "\"]\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))

	r := runWorkflowCmd(t, "build", "--dir", sub, "--json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "building "+platform+"…")
	var res struct {
		ReleaseID string             `json:"release_id"`
		Path      string             `json:"path"`
		Size      int64              `json:"size"`
		Manifest  artifacts.Manifest `json:"manifest"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.NoError(t, artifacts.ValidateID(res.ReleaseID))
	require.Equal(t, filepath.Join(dir, "dist", "fixture.tar.zst"), res.Path)
	st, err := os.Stat(res.Path)
	require.NoError(t, err)
	require.Equal(t, st.Size(), res.Size)
	require.Equal(t, []artifacts.TaskID{{Name: "Greet", Version: "v1.0"}}, res.Manifest.Tasks)

	out := filepath.Join(t.TempDir(), "x.tar.zst")
	r = runWorkflowCmd(t, "build", "--dir", dir, "--out", out)
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "Release:    "+res.ReleaseID+"\n", "same source, same release")
	require.Contains(t, r.stdout, "Path:       "+out+"\n")
	require.Contains(t, r.stdout, "Platforms:  "+platform+"\n")
	require.Contains(t, r.stdout, "Tasks:      Greet@v1.0\n")
	require.Contains(t, r.stderr, "publish it with: runfleet workflow publish "+out)
	require.FileExists(t, out)

	r = runWorkflowCmd(t, "build", "--dir", t.TempDir())
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: no runfleet.workflow.toml in ")
	require.Contains(t, r.stderr, "run `runfleet workflow init SLUG` to create one")
	require.True(t, strings.HasSuffix(r.stderr, "hint: or point at the project with --dir DIR\n"), r.stderr)

	r = runWorkflowCmd(t, "build", "extra")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, `unexpected argument "extra"`)
}

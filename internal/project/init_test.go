package project

import (
	"bytes"
	"context"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/rftype"
)

// sdkRoot is the runfleet module's source directory, found from the test's
// working directory.
func sdkRoot(t *testing.T) string {
	t.Helper()
	dir := findSDKDir(mustGetwd(t))
	require.NotEmpty(t, dir, "no runfleet go.mod above the test's working directory")
	return dir
}

func TestInit(t *testing.T) {
	t.Parallel()
	sdk := sdkRoot(t)
	dir := filepath.Join(t.TempDir(), "new", "bench")
	var log bytes.Buffer
	files, err := Init(dir, "bench", InitOptions{Module: "example.com/me/bench", Cluster: "bench-dev", SDKDir: sdk, Log: &log})
	require.NoError(t, err)
	require.Equal(t, []string{
		filepath.Join(dir, ConfigFile), filepath.Join(dir, "main.go"),
		filepath.Join(dir, "go.mod"), filepath.Join(dir, ".gitignore"),
	}, files)
	require.Empty(t, log.String())

	cfg, err := Load(filepath.Join(dir, ConfigFile))
	require.NoError(t, err)
	require.Equal(t, Config{Workflow: "bench", Main: ".", Platforms: []string{"linux/amd64", "linux/arm64"},
		Targets: map[string]Target{"dev": {Cluster: "bench-dev"}}, Dir: dir}, cfg)

	mainGo, err := os.ReadFile(filepath.Join(dir, "main.go"))
	require.NoError(t, err)
	formatted, err := format.Source(mainGo)
	require.NoError(t, err)
	require.Equal(t, string(formatted), string(mainGo), "main.go is not gofmt-clean")
	require.Contains(t, string(mainGo), "workflows.ServeReleaseModes(tasks...)")

	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	require.Contains(t, string(goMod), "module example.com/me/bench\n")
	require.Contains(t, string(goMod), "require github.com/runfleet/runfleet "+zeroPseudoVersion+"\n")
	require.Contains(t, string(goMod), "replace github.com/runfleet/runfleet => "+goModPath(sdk)+"\n")

	gitignore, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	require.NoError(t, err)
	require.Equal(t, "dist/\n", string(gitignore))

	t.Run("Builds", func(t *testing.T) {
		if testing.Short() {
			t.Skip("compiles the SDK; skipped with -short")
		}
		if err := exec.Command("go", "doc", SDKModule+"/workflows", "ServeReleaseModes").Run(); err != nil {
			t.Skip("workflows.ServeReleaseModes does not exist yet; the scaffold calls it")
		}
		// Without Tidy there is no go.sum yet; with it, the project builds.
		tidyDir := filepath.Join(t.TempDir(), "tidy")
		files, err := Init(tidyDir, "bench", InitOptions{SDKDir: sdk, Tidy: true})
		require.NoError(t, err)
		require.Len(t, files, 4)
		require.FileExists(t, filepath.Join(tidyDir, "go.sum"))
		bin := filepath.Join(t.TempDir(), "bench")
		goRun(t, tidyDir, "build", "-o", bin, ".")

		// The scaffold is a release binary: it serves describe mode.
		d, err := describe(context.Background(), bin, "the binary", time.Minute)
		require.NoError(t, err)
		require.Equal(t, protocol.Describe{Protocol: 1, Tasks: []rftype.TaskIdentifier{{Name: "Greet", Version: "v1.0"}}}, d)

		// And without a cluster it is a direct runner asking for one.
		out, err := exec.Command(bin).CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(out), "-cluster")
	})
}

// goRun runs the go command in dir and fails the test with its output.
func goRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
}

func TestInitRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	for _, name := range []string{ConfigFile, "main.go", "go.mod"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(p, []byte("mine"), 0o644))
			files, err := Init(dir, "bench", InitOptions{SDKDir: sdkRoot(t)})
			require.ErrorIs(t, err, ErrExists)
			require.ErrorContains(t, err, name)
			require.Empty(t, files)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, "mine", string(b))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "init wrote files although it refused")
		})
	}

	t.Run("Twice", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		_, err := Init(dir, "bench", InitOptions{SDKDir: sdkRoot(t)})
		require.NoError(t, err)
		_, err = Init(dir, "bench", InitOptions{SDKDir: sdkRoot(t)})
		require.ErrorIs(t, err, ErrExists)
		require.ErrorContains(t, err, "runfleet.workflow.toml and main.go and go.mod")
	})

	t.Run("GitignoreKept", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		gi := filepath.Join(dir, ".gitignore")
		require.NoError(t, os.WriteFile(gi, []byte("*.log"), 0o644))
		files, err := Init(dir, "bench", InitOptions{SDKDir: sdkRoot(t)})
		require.NoError(t, err)
		require.Contains(t, files, gi)
		b, err := os.ReadFile(gi)
		require.NoError(t, err)
		require.Equal(t, "*.log\ndist/\n", string(b))

		// Already ignored: left alone and not reported.
		dir = t.TempDir()
		gi = filepath.Join(dir, ".gitignore")
		require.NoError(t, os.WriteFile(gi, []byte("bin/\ndist/\n"), 0o644))
		files, err = Init(dir, "bench", InitOptions{SDKDir: sdkRoot(t)})
		require.NoError(t, err)
		require.NotContains(t, files, gi)
		b, err = os.ReadFile(gi)
		require.NoError(t, err)
		require.Equal(t, "bin/\ndist/\n", string(b))
	})
}

func TestInitBadArguments(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, slug string
		opts       InitOptions
		want       string
	}{
		{"Slug", "My_Flow", InitOptions{}, `workflow slug "My_Flow"`},
		{"Cluster", "flow", InitOptions{Cluster: "Dev"}, `invalid cluster slug "Dev"`},
		{"Module", "flow", InitOptions{Module: "example.com/my flow"}, `module path "example.com/my flow"`},
		{"ModuleDots", "flow", InitOptions{Module: "example.com/../x"}, `module path "example.com/../x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "p")
			_, err := Init(dir, tc.slug, tc.opts)
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tc.want)
			require.NoDirExists(t, dir)
		})
	}

	t.Run("SDKDir", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "p")
		notSDK := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(notSDK, "go.mod"), []byte("module example.com/other\n"), 0o644))
		_, err := Init(dir, "flow", InitOptions{SDKDir: notSDK})
		require.ErrorContains(t, err, "is not the go.mod of github.com/runfleet/runfleet")
		require.NoDirExists(t, dir)
	})
}

func TestSDKDetection(t *testing.T) {
	t.Parallel()
	sdk := sdkRoot(t)
	require.Equal(t, sdk, findSDKDir(t.TempDir(), filepath.Join(sdk, "internal", "project")))
	require.Empty(t, findSDKDir(t.TempDir()))

	// Without an SDK directory, go.mod says how to add the replace directive.
	goMod := string(renderGoMod("bench", sdkInfo{version: zeroPseudoVersion, goVersion: "1.26.4"}))
	require.Contains(t, goMod, "require github.com/runfleet/runfleet "+zeroPseudoVersion+"\n")
	require.NotContains(t, goMod, "\nreplace ")
	require.Contains(t, goMod, "go mod edit -replace github.com/runfleet/runfleet=/path/to/runfleet")

	require.Equal(t, "/src/runfleet", goModPath("/src/runfleet"))
	require.Equal(t, `"/my src/runfleet"`, goModPath("/my src/runfleet"))
	require.Equal(t, `"C:\\src"`, goModPath(`C:\src`))
}

package project

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/rftype"
)

// fixtureProject copies testdata/describe, a stdlib-only main package that
// serves describe mode by hand, into a new project whose main package is
// cmd/fixture, and returns its config.
func fixtureProject(t *testing.T, config string) Config {
	t.Helper()
	dir := t.TempDir()
	mainDir := filepath.Join(dir, "cmd", "fixture")
	require.NoError(t, os.MkdirAll(mainDir, 0o755))
	copyFile(t, filepath.Join("testdata", "describe", "go.mod.txt"), filepath.Join(dir, "go.mod"))
	copyFile(t, filepath.Join("testdata", "describe", "main.go"), filepath.Join(mainDir, "main.go"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config), 0o644))
	cfg, err := Load(filepath.Join(dir, ConfigFile))
	require.NoError(t, err)
	return cfg
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o644))
}

// TestBuild shares its builds between subtests: cross-compiling is slow.
func TestBuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := fixtureProject(t, "workflow = \"fixture\"\nmain = \"cmd/fixture\"\n")

	var log bytes.Buffer
	first, err := Build(ctx, cfg, BuildOptions{Log: &log})
	require.NoError(t, err)

	t.Run("Result", func(t *testing.T) {
		require.Equal(t, filepath.Join(cfg.Dir, "dist", "fixture.tar.zst"), first.Path)
		st, err := os.Stat(first.Path)
		require.NoError(t, err)
		require.Equal(t, st.Size(), first.Size)
		require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
		f, err := os.Open(first.Path)
		require.NoError(t, err)
		defer f.Close()
		id, err := artifacts.Digest(f)
		require.NoError(t, err)
		require.Equal(t, id, first.ReleaseID)

		require.Equal(t, artifacts.FormatVersion, first.Manifest.FormatVersion)
		require.Equal(t, "fixture", first.Manifest.Workflow)
		require.Equal(t, []artifacts.TaskID{{Name: "Add", Version: "v2.3"}, {Name: "Greet", Version: "v1.0"}}, first.Manifest.Tasks)
		require.Equal(t, map[string]string{
			"linux/amd64": "bin/linux-amd64/fixture",
			"linux/arm64": "bin/linux-arm64/fixture",
		}, first.Manifest.Entrypoints)
		require.True(t, strings.HasPrefix(first.Manifest.Build.GoVersion, "go1."), first.Manifest.Build.GoVersion)
		require.Empty(t, first.Manifest.Build.SourceRevision, "not a git work tree")

		require.Contains(t, log.String(), "building linux/amd64…\n")
		require.Contains(t, log.String(), "building linux/arm64…\n")

		entries, err := os.ReadDir(filepath.Dir(first.Path))
		require.NoError(t, err)
		require.Len(t, entries, 1, "temporary files left next to the artifact")
	})

	t.Run("Artifact", func(t *testing.T) {
		f, err := os.Open(first.Path)
		require.NoError(t, err)
		defer f.Close()
		dest := filepath.Join(t.TempDir(), "release")
		m, err := artifacts.Unpack(ctx, f, first.ReleaseID, dest, artifacts.Limits{})
		require.NoError(t, err)
		require.Equal(t, first.Manifest, m)
		for platform, machine := range map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64} {
			ef, err := elf.Open(filepath.Join(dest, filepath.FromSlash(m.Entrypoints[platform])))
			require.NoError(t, err, platform)
			require.Equal(t, machine, ef.Machine, platform)
			require.Nil(t, ef.Section(".symtab"), "%s binary is not stripped", platform)
			require.NoError(t, ef.Close())
		}
	})

	t.Run("Deterministic", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "again", "fixture.tar.zst")
		second, err := Build(ctx, cfg, BuildOptions{Out: out})
		require.NoError(t, err)
		require.Equal(t, out, second.Path)
		require.Equal(t, first.ReleaseID, second.ReleaseID)
		a, err := os.ReadFile(first.Path)
		require.NoError(t, err)
		b, err := os.ReadFile(second.Path)
		require.NoError(t, err)
		require.True(t, bytes.Equal(a, b), "two builds of the same source differ")

		// Building again over an existing artifact replaces it.
		third, err := Build(ctx, cfg, BuildOptions{Out: out})
		require.NoError(t, err)
		require.Equal(t, first.ReleaseID, third.ReleaseID)
	})

	t.Run("HostNotAPlatform", func(t *testing.T) {
		// Build only for a platform this host cannot run: describe mode then
		// needs an extra binary for the host.
		other := "linux/arm64"
		if runtime.GOOS+"/"+runtime.GOARCH == other {
			other = "linux/amd64"
		}
		cfg := cfg
		cfg.Platforms = []string{other}
		var log bytes.Buffer
		res, err := Build(ctx, cfg, BuildOptions{Out: filepath.Join(t.TempDir(), "one.tar.zst"), Log: &log})
		require.NoError(t, err)
		require.Equal(t, map[string]string{other: "bin/" + strings.ReplaceAll(other, "/", "-") + "/fixture"}, res.Manifest.Entrypoints)
		require.Len(t, res.Manifest.Tasks, 2)
		require.Contains(t, log.String(), "(this host, to run describe mode)")
		require.NotEqual(t, first.ReleaseID, res.ReleaseID)
	})
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	host := runtime.GOOS + "/" + runtime.GOARCH
	if host != "linux/amd64" && host != "linux/arm64" {
		host = "linux/amd64"
	}
	oneHost := "workflow = \"fixture\"\nmain = \"cmd/fixture\"\nplatforms = [\"" + host + "\"]\n"

	t.Run("CompileError", func(t *testing.T) {
		t.Parallel()
		cfg := fixtureProject(t, oneHost)
		require.NoError(t, os.WriteFile(filepath.Join(cfg.MainDir(), "broken.go"), []byte("package main\n\nfunc broken() { undefinedThing() }\n"), 0o644))
		_, err := Build(ctx, cfg, BuildOptions{})
		require.ErrorContains(t, err, "go build ./cmd/fixture for "+host)
		require.ErrorContains(t, err, "undefinedThing")
		require.NoFileExists(t, filepath.Join(cfg.Dir, "dist", "fixture.tar.zst"))
	})

	t.Run("NoDescribe", func(t *testing.T) {
		t.Parallel()
		cfg := fixtureProject(t, "workflow = \"fixture\"\nmain = \"cmd/fixture\"\n") // both platforms
		require.NoError(t, os.WriteFile(filepath.Join(cfg.MainDir(), "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
		var log bytes.Buffer
		_, err := Build(ctx, cfg, BuildOptions{Log: &log})
		require.ErrorContains(t, err, "build fixture: the "+runtime.GOOS+"/"+runtime.GOARCH+" binary of ./cmd/fixture "+
			"does not serve describe mode: call workflows.ServeReleaseModes first thing in main (it printed nothing)")
		require.Equal(t, 1, strings.Count(log.String(), "building "), "went on building after describe failed:\n%s", log.String())
		require.NoFileExists(t, filepath.Join(cfg.Dir, "dist", "fixture.tar.zst"))
	})

	t.Run("MissingMain", func(t *testing.T) {
		t.Parallel()
		cfg := fixtureProject(t, "workflow = \"fixture\"\nmain = \"cmd/nothere\"\n")
		_, err := Build(ctx, cfg, BuildOptions{})
		require.ErrorContains(t, err, `main "cmd/nothere"`)
		require.ErrorContains(t, err, cfg.Path())
	})

	t.Run("NoDir", func(t *testing.T) {
		t.Parallel()
		_, err := Build(ctx, Config{Workflow: "x"}, BuildOptions{})
		require.ErrorContains(t, err, "Config.Dir is empty")
	})

	t.Run("NoGo", func(t *testing.T) {
		t.Parallel()
		cfg := fixtureProject(t, oneHost)
		_, err := Build(ctx, cfg, BuildOptions{GoCmd: filepath.Join(t.TempDir(), "no-go-here")})
		require.ErrorContains(t, err, "install Go")
	})
}

// TestDescribe runs stand-in binaries (shell scripts) in describe mode.
func TestDescribe(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("uses shell scripts")
	}
	script := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "bin")
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
		return p
	}
	good := `{"protocol":1,"tasks":[{"name":"Greet","version":"v1.0"}]}`

	t.Run("Good", func(t *testing.T) {
		t.Parallel()
		// The environment: describe mode, and no runfleet settings of the user.
		bin := script(t, `[ "$RUNFLEET_MODE" = describe ] || exit 7
[ -z "$RUNFLEET_CLUSTER" ] || exit 8
case "$RUNFLEET_REDIS_URL" in *.invalid:*) ;; *) exit 9;; esac
echo '`+good+`'`)
		d, err := describe(context.Background(), bin, "the binary", time.Minute)
		require.NoError(t, err)
		require.Equal(t, protocol.Describe{Protocol: 1, Tasks: []rftype.TaskIdentifier{{Name: "Greet", Version: "v1.0"}}}, d)
	})

	for _, tc := range []struct{ name, body, want string }{
		{"Silent", "exit 0", "printed nothing"},
		{"Fails", "echo 'usage: x -cluster C' >&2; exit 2", "exit status 2; stderr: usage: x -cluster C"},
		{"Hangs", "exec sleep 30", "still running after 300ms"},
		{"NotJSON", "echo hello", "not a describe object"},
		{"Twice", "echo '" + good + good + "'", "more than one JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := describe(context.Background(), script(t, tc.body), "the binary", 300*time.Millisecond)
			require.ErrorContains(t, err, describeHint)
			require.ErrorContains(t, err, tc.want)
			require.Less(t, time.Since(start), 10*time.Second)
		})
	}
}

func TestDecodeDescribe(t *testing.T) {
	t.Parallel()
	d, err := decodeDescribe([]byte(" {\"protocol\":1,\"tasks\":[{\"name\":\"A\",\"version\":\"v0.1\"}]}\n\n"))
	require.NoError(t, err)
	require.Equal(t, protocol.Describe{Protocol: 1, Tasks: []rftype.TaskIdentifier{{Name: "A", Version: "v0.1"}}}, d)

	for in, want := range map[string]string{
		"":     "printed nothing",
		"  \n": "printed nothing",
		`{"protocol":2,"tasks":[{"name":"A","version":"v0.1"}]}`:           "worker protocol 2",
		`{"tasks":[{"name":"A","version":"v0.1"}]}`:                        "worker protocol 0",
		`{"protocol":1,"tasks":[]}`:                                        "describes no tasks",
		`{"protocol":1,"tasks":[{"name":"A","version":"v0.1"}],"extra":1}`: `unknown field "extra"`,
		`{"protocol":1,"tasks":[{"name":"A","version":"v0.1"}]} junk`:      "more than one JSON object",
		`[1]`: "not a describe object",
	} {
		_, err := decodeDescribe([]byte(in))
		require.ErrorContains(t, err, want, "input %q", in)
	}
}

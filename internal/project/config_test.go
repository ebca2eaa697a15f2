package project

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeConfig writes a config file into a new directory and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), ConfigFile)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func TestLoad(t *testing.T) {
	t.Parallel()

	t.Run("Full", func(t *testing.T) {
		t.Parallel()
		p := writeConfig(t, `# runfleet workflow project
workflow = "bench"
main = "./cmd/bench/"
platforms = ["linux/arm64", "linux/amd64"]
[targets.dev]
cluster = "bench-dev"
[targets.prod-eu]
cluster = "prod"
`)
		cfg, err := Load(p)
		require.NoError(t, err)
		require.Equal(t, Config{
			Workflow:  "bench",
			Main:      "cmd/bench",
			Platforms: []string{"linux/amd64", "linux/arm64"}, // canonical order
			Targets:   map[string]Target{"dev": {Cluster: "bench-dev"}, "prod-eu": {Cluster: "prod"}},
			Dir:       filepath.Dir(p),
		}, cfg)
		require.Equal(t, p, cfg.Path())
		require.Equal(t, filepath.Join(filepath.Dir(p), "cmd", "bench"), cfg.MainDir())

		cl, err := cfg.Cluster("prod-eu")
		require.NoError(t, err)
		require.Equal(t, "prod", cl)
		_, err = cfg.Cluster("staging")
		require.ErrorIs(t, err, ErrNoTarget)
		require.ErrorContains(t, err, `"staging"`)
		require.ErrorContains(t, err, "targets: dev, prod-eu")
		require.ErrorContains(t, err, p)
	})

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(writeConfig(t, `workflow = "w"`))
		require.NoError(t, err)
		require.Equal(t, ".", cfg.Main)
		require.Equal(t, []string{"linux/amd64", "linux/arm64"}, cfg.Platforms)
		require.Empty(t, cfg.Targets)
		_, err = cfg.Cluster("dev")
		require.ErrorIs(t, err, ErrNoTarget)
		require.ErrorContains(t, err, "defines no targets")
	})

	t.Run("RelativePath", func(t *testing.T) {
		t.Parallel()
		p := writeConfig(t, `workflow = "w"`)
		rel, err := filepath.Rel(mustGetwd(t), p)
		require.NoError(t, err)
		cfg, err := Load(rel)
		require.NoError(t, err)
		require.Equal(t, filepath.Dir(p), cfg.Dir)
	})

	for _, tc := range []struct {
		name, content string
		want          []string // substrings of the error, besides the file path
	}{
		{"UnknownKey", "workflow = \"w\"\nmian = \".\"\n", []string{`unknown key "mian"`}},
		{"UnknownTargetKey", "workflow = \"w\"\n[targets.dev]\ncluster = \"c\"\nregion = \"eu\"\n", []string{`unknown key "targets.dev.region"`}},
		{"UnknownTable", "workflow = \"w\"\n[build]\ntags = [\"x\"]\n", []string{`unknown key "build"`}},
		{"KeyCase", "Workflow = \"w\"\n", []string{`unknown key "Workflow"`}},
		{"MissingWorkflow", "main = \".\"\n", []string{"workflow is missing"}},
		{"BadSlug", "workflow = \"Bench_1\"\n", []string{`invalid workflow slug "Bench_1"`, "lowercase"}},
		{"LongSlug", "workflow = \"" + string(make101('a')) + "\"\n", []string{"workflow", "1 to 100"}},
		{"BadPlatform", "workflow = \"w\"\nplatforms = [\"linux/amd64\", \"darwin/arm64\"]\n", []string{`platforms[1] "darwin/arm64" is not supported`}},
		{"DuplicatePlatform", "workflow = \"w\"\nplatforms = [\"linux/amd64\", \"linux/amd64\"]\n", []string{`platforms[1] "linux/amd64" is listed twice`}},
		{"NoPlatforms", "workflow = \"w\"\nplatforms = []\n", []string{"platforms is empty"}},
		{"PlatformsType", "workflow = \"w\"\nplatforms = \"linux/amd64\"\n", []string{"platforms"}},
		{"AbsoluteMain", "workflow = \"w\"\nmain = \"/src/w\"\n", []string{`main "/src/w" is absolute`}},
		{"EmptyMain", "workflow = \"w\"\nmain = \"\"\n", []string{"main is empty"}},
		{"BadTargetName", "workflow = \"w\"\n[targets.Dev]\ncluster = \"c\"\n", []string{`targets.Dev: invalid target slug "Dev"`}},
		{"MissingCluster", "workflow = \"w\"\n[targets.dev]\n", []string{"targets.dev.cluster is missing"}},
		{"BadCluster", "workflow = \"w\"\n[targets.dev]\ncluster = \"-x\"\n", []string{`targets.dev.cluster: invalid cluster slug "-x"`}},
		{"TargetNotTable", "workflow = \"w\"\n[targets]\ndev = \"c\"\n", []string{"targets.dev"}},
		{"Syntax", "workflow = \"w\nmain = \".\"\n", []string{"line 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeConfig(t, tc.content)
			_, err := Load(p)
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, p)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}

	t.Run("MissingFile", func(t *testing.T) {
		t.Parallel()
		p := filepath.Join(t.TempDir(), ConfigFile)
		_, err := Load(p)
		require.ErrorIs(t, err, os.ErrNotExist)
		require.ErrorContains(t, err, p)
	})
}

func make101(c byte) []byte {
	b := make([]byte, 101)
	for i := range b {
		b[i] = c
	}
	return b
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	return wd
}

func TestFind(t *testing.T) {
	t.Parallel()
	root := filepath.Dir(writeConfig(t, "workflow = \"found\"\n"))
	deep := filepath.Join(root, "a", "b", "c")
	require.NoError(t, os.MkdirAll(deep, 0o755))

	for _, dir := range []string{root, deep} {
		cfg, err := Find(dir)
		require.NoError(t, err)
		require.Equal(t, "found", cfg.Workflow)
		require.Equal(t, root, cfg.Dir)
	}

	// A closer file wins, and its errors are reported rather than skipped.
	require.NoError(t, os.WriteFile(filepath.Join(root, "a", ConfigFile), []byte("workflow = \"BAD\"\n"), 0o644))
	_, err := Find(deep)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, filepath.Join(root, "a", ConfigFile))

	empty := t.TempDir()
	_, err = Find(empty)
	require.ErrorIs(t, err, ErrNoConfig)
	require.EqualError(t, err, "no runfleet.workflow.toml in "+empty+
		" or its parents; run `runfleet workflow init SLUG` to create one")
}

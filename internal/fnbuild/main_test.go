package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readZip opens a function zip and returns its only entry's header and
// content.
func readZip(t *testing.T, path string) (*zip.FileHeader, []byte) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	require.NoError(t, err)
	defer zr.Close()
	require.Len(t, zr.File, 1, "one entry")
	f := zr.File[0]
	rc, err := f.Open()
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return &f.FileHeader, b
}

func TestZipIsTheSameForTheSameBinary(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("\x7fELF not really a binary "), 4096)
	var sums []string
	var zips [][]byte
	for i, mtime := range []time.Time{time.Now(), time.Date(2001, 2, 3, 4, 5, 6, 0, time.Local)} {
		dir := t.TempDir()
		bin := filepath.Join(dir, "bootstrap")
		require.NoError(t, os.WriteFile(bin, content, 0o700))
		require.NoError(t, os.Chtimes(bin, mtime, mtime))
		zipPath := filepath.Join(dir, "fn.zip")
		sum, err := writeZip(zipPath, bin)
		require.NoError(t, err, "zip %d", i)
		b, err := os.ReadFile(zipPath)
		require.NoError(t, err)
		sums, zips = append(sums, sum), append(zips, b)

		hdr, got := readZip(t, zipPath)
		require.Equal(t, "bootstrap", hdr.Name)
		require.Equal(t, os.FileMode(0o755), hdr.Mode().Perm(), "Lambda runs bootstrap, so it must be executable")
		require.True(t, hdr.Modified.Equal(zipTime), "fixed time, not the file's: %v", hdr.Modified)
		require.Equal(t, zip.Deflate, hdr.Method)
		require.Equal(t, content, got)
		st, err := os.Stat(zipPath)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
		left, err := filepath.Glob(filepath.Join(dir, ".fnbuild-*"))
		require.NoError(t, err)
		require.Empty(t, left, "no temporary file is left")
	}
	require.Equal(t, sums[0], sums[1])
	require.Equal(t, zips[0], zips[1])
}

// Building a function twice gives the same bytes, and the binary is what
// provided.al2023 runs: static, linux, without the RPC shim. The command
// runs as the task runs it (go run), outside this test binary: under -race
// compressing 12 MB here would take a minute.
func TestBuildIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sweep function twice (a minute or more on a cold cache)")
	}
	t.Parallel()
	arch := runtime.GOARCH // its packages are in the build cache already
	var zips [][]byte
	for range 2 {
		out := t.TempDir()
		cmd := exec.CommandContext(t.Context(), "go", "run", ".", "-out", out, "-functions", "sweep", "-arch", arch)
		stdout, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("fnbuild: %v\n%s", err, ee.Stderr)
		}
		require.NoError(t, err)
		zipPath := filepath.Join(out, "sweep-"+arch+".zip")
		b, err := os.ReadFile(zipPath)
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		require.Equal(t, zipPath+"  sha256:"+hex.EncodeToString(sum[:])+"\n", string(stdout), "it prints each zip with its digest")
		zips = append(zips, b)
	}
	require.True(t, bytes.Equal(zips[0], zips[1]), "two builds of the same tree differ")

	zr, err := zip.NewReader(bytes.NewReader(zips[0]), int64(len(zips[0])))
	require.NoError(t, err)
	rc, err := zr.File[0].Open()
	require.NoError(t, err)
	bin, err := io.ReadAll(rc)
	require.NoError(t, err)
	rc.Close()

	info, err := buildinfo.Read(bytes.NewReader(bin))
	require.NoError(t, err)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	require.Equal(t, "github.com/runfleet/runfleet/functions/sweep", info.Path)
	require.Equal(t, "lambda.norpc", settings["-tags"])
	require.Equal(t, "0", settings["CGO_ENABLED"])
	require.Equal(t, "linux", settings["GOOS"])
	require.Equal(t, arch, settings["GOARCH"])
	require.Equal(t, "true", settings["-trimpath"])

	ef, err := elf.NewFile(bytes.NewReader(bin))
	require.NoError(t, err)
	for _, p := range ef.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "the binary must be static (no dynamic loader)")
	}
}

func TestBuildRefusesWhatItCannotBuild(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root, err := moduleDir(ctx)
	require.NoError(t, err)
	_, err = build(ctx, options{ModuleDir: root, OutDir: t.TempDir(), Functions: []string{"../cmd"}, Arches: []string{"amd64"}})
	require.ErrorContains(t, err, "a function is a directory name under functions/")
	_, err = build(ctx, options{ModuleDir: root, OutDir: t.TempDir(), Functions: []string{"nosuchfn"}, Arches: []string{"amd64"}})
	require.ErrorContains(t, err, "build nosuchfn for amd64")
	_, err = build(ctx, options{ModuleDir: root, OutDir: t.TempDir()})
	require.ErrorContains(t, err, "nothing to build")
	require.Equal(t, []string{"a", "b"}, splitList(" a,,b ,"))
}

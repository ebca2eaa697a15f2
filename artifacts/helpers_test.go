package artifacts

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

func testManifest() Manifest {
	return Manifest{
		FormatVersion: FormatVersion,
		Workflow:      "image-tiles",
		Tasks: []TaskID{
			{Name: "Resize", Version: "v1.2"},
			{Name: "Crop", Version: "v0.1"},
		},
		Entrypoints: map[string]string{
			PlatformLinuxAMD64: "bin/linux-amd64/tiles",
			PlatformLinuxARM64: "bin/linux-arm64/tiles",
		},
		Build: BuildInfo{GoVersion: "go1.26.4", SourceRevision: "3f2a9c1"},
	}
}

func testFiles() map[string]File {
	return map[string]File{
		"bin/linux-amd64/tiles": {Data: []byte("#!/bin/sh\necho amd64\n"), Executable: true},
		"bin/linux-arm64/tiles": {Data: []byte("#!/bin/sh\necho arm64\n"), Executable: true},
		"README.txt":            {Data: []byte("hello\n")},
		"share/empty":           {Data: []byte{}},
	}
}

func packBytes(t testing.TB, m Manifest, files map[string]File) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	id, err := Pack(&buf, m, files)
	require.NoError(t, err)
	return buf.Bytes(), id
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// entry is one hand-built tar entry for hostile archives.
type entry struct {
	hdr  tar.Header
	body []byte
}

func reg(name string, body []byte, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body: body}
}

// manifestJSON is a valid manifest naming bin/app as the amd64 entrypoint.
func manifestJSON(t testing.TB) []byte {
	t.Helper()
	m := Manifest{
		FormatVersion: 1,
		Workflow:      "wf",
		Tasks:         []TaskID{{Name: "T", Version: "v1.0"}},
		Entrypoints:   map[string]string{PlatformLinuxAMD64: "bin/app"},
	}
	b, err := m.Encode()
	require.NoError(t, err)
	return b
}

// buildArchive writes entries as a tar.zst by hand, with no safety checks.
func buildArchive(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	require.NoError(t, err)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := e.hdr
		hdr.ModTime = time.Unix(0, 0)
		require.NoError(t, tw.WriteHeader(&hdr))
		if len(e.body) > 0 {
			_, err := tw.Write(e.body)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// requireEmpty fails unless dir holds nothing.
func requireEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Empty(t, names, "%s must be left empty", dir)
}

// newDest returns an empty parent directory and a destination inside it.
func newDest(t testing.TB) (parent, dest string) {
	parent = filepath.Join(t.TempDir(), "cache")
	require.NoError(t, os.Mkdir(parent, 0o755))
	return parent, filepath.Join(parent, "release")
}

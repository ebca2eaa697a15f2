package runnerd_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
)

type hostileEntry struct {
	hdr  tar.Header
	body []byte
}

// hostileArchive writes entries as a tar.zst with no safety checks, the
// manifest of the bench release first.
func hostileArchive(t *testing.T, entries ...hostileEntry) []byte {
	t.Helper()
	m, err := benchManifest().Encode()
	require.NoError(t, err)
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	require.NoError(t, err)
	tw := tar.NewWriter(zw)
	all := append([]hostileEntry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "manifest.json", Mode: 0o644, Size: int64(len(m))}, body: m}}, entries...)
	for _, e := range all {
		e.hdr.ModTime = time.Unix(0, 0)
		require.NoError(t, tw.WriteHeader(&e.hdr))
		if len(e.body) > 0 {
			_, err := tw.Write(e.body)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// Hostile archives that somehow reached the store (written around
// `workflow publish`, which would refuse them) are refused by the runner
// with the rule named; nothing runs and nothing is left unpacked.
func TestHostileArchivesRefused(t *testing.T) {
	binary, err := os.ReadFile(benchBinary(t, "a"))
	require.NoError(t, err)
	exe := hostileEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/bench", Mode: 0o755, Size: int64(len(binary))}, body: binary}
	cases := map[string]struct {
		entries []hostileEntry
		why     string
	}{
		"parent path": {[]hostileEntry{exe, {hdr: tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Mode: 0o644, Size: 1}, body: []byte("x")}}, ".."},
		"absolute":    {[]hostileEntry{exe, {hdr: tar.Header{Typeflag: tar.TypeReg, Name: "/etc/evil", Mode: 0o644, Size: 1}, body: []byte("x")}}, "absolute"},
		"symlink":     {[]hostileEntry{exe, {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/link", Linkname: "/etc/passwd"}}}, "link"},
		"hard link":   {[]hostileEntry{exe, {hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/hard", Linkname: "bin/bench"}}}, "link"},
		"device":      {[]hostileEntry{exe, {hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o644, Devmajor: 1, Devminor: 3}}}, "device"},
		// 64 MiB of zeros in a few kilobytes; the ratio is checked as the
		// archive streams in, before the missing entrypoint would be.
		"bomb": {[]hostileEntry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "data/zeros", Mode: 0o644, Size: 64 << 20}, body: make([]byte, 64<<20)}}, "ratio"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			b := hostileArchive(t, c.entries...)
			sum := sha256.Sum256(b)
			id := hex.EncodeToString(sum[:])
			rec, err := json.Marshal(artifacts.Release{ID: id, Workflow: "bench", Manifest: benchManifest(), Size: int64(len(b)), PublishedAt: time.Now()})
			require.NoError(t, err)
			require.NoError(t, f.store.Put(f.ctx, "releases/bench/"+id+".tar.zst", bytes.NewReader(b)))
			require.NoError(t, f.store.Put(f.ctx, "releases/bench/"+id+".json", bytes.NewReader(rec)))
			rel, err := f.catalog.Release(f.ctx, "bench", id)
			require.NoError(t, err)
			f.deploy(t, rel)
			d := f.start(t, nil)
			requireRefused(t, f, d, id, c.why)
			ents, err := os.ReadDir(f.cache)
			require.NoError(t, err)
			for _, e := range ents {
				require.NotContains(t, e.Name(), id[:12], "nothing of the release is left in the cache: %s", filepath.Join(f.cache, e.Name()))
			}
		})
	}
}

package artifacts

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

func TestPackDeterministic(t *testing.T) {
	t.Parallel()
	b1, id1 := packBytes(t, testManifest(), testFiles())
	b2, id2 := packBytes(t, testManifest(), testFiles())
	require.Equal(t, b1, b2)
	require.Equal(t, id1, id2)
	require.Equal(t, sha(b1), id1)
	got, err := Digest(bytes.NewReader(b1))
	require.NoError(t, err)
	require.Equal(t, id1, got)
	require.NoError(t, ValidateID(id1))

	// Files read from disk give the same bytes as in-memory data.
	dir := t.TempDir()
	onDisk := map[string]File{}
	for name, f := range testFiles() {
		p := filepath.Join(dir, filepath.Base(name)+"-"+filepath.Base(filepath.Dir(name)))
		require.NoError(t, os.WriteFile(p, f.Data, 0o600))
		onDisk[name] = File{Path: p, Executable: f.Executable}
	}
	b3, id3 := packBytes(t, testManifest(), onDisk)
	require.Equal(t, b1, b3)
	require.Equal(t, id1, id3)

	// Task order in the manifest does not matter.
	m := testManifest()
	m.Tasks[0], m.Tasks[1] = m.Tasks[1], m.Tasks[0]
	_, id4 := packBytes(t, m, testFiles())
	require.Equal(t, id1, id4)
}

func TestPackHeaders(t *testing.T) {
	t.Parallel()
	b, _ := packBytes(t, testManifest(), testFiles())
	zr, err := zstd.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	defer zr.Close()
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names = append(names, hdr.Name)
		require.Equal(t, byte(tar.TypeReg), hdr.Typeflag)
		require.Equal(t, int64(0), hdr.ModTime.Unix())
		require.Zero(t, hdr.Uid)
		require.Zero(t, hdr.Gid)
		require.Empty(t, hdr.Uname)
		require.Empty(t, hdr.Gname)
		require.Equal(t, tar.FormatUSTAR, hdr.Format)
		if hdr.Name == "bin/linux-amd64/tiles" || hdr.Name == "bin/linux-arm64/tiles" {
			require.Equal(t, int64(0o755), hdr.Mode)
		} else {
			require.Equal(t, int64(0o644), hdr.Mode)
		}
	}
	require.Equal(t, []string{"manifest.json", "README.txt", "bin/linux-amd64/tiles", "bin/linux-arm64/tiles", "share/empty"}, names)
}

func TestPackErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(m *Manifest, files map[string]File)
		want   string
	}{
		{"missing entrypoint", func(m *Manifest, f map[string]File) { delete(f, "bin/linux-arm64/tiles") }, `entrypoint "bin/linux-arm64/tiles" for linux/arm64 is not among the files`},
		{"entrypoint not executable", func(m *Manifest, f map[string]File) {
			f["bin/linux-amd64/tiles"] = File{Data: []byte("x")}
		}, "is not marked Executable"},
		{"invalid manifest", func(m *Manifest, f map[string]File) { m.Workflow = "" }, "workflow slug"},
		{"dotdot path", func(m *Manifest, f map[string]File) { f["../evil"] = File{Data: []byte("x")} }, `file path "../evil" contains a ".." component`},
		{"reserved manifest", func(m *Manifest, f map[string]File) { f["manifest.json"] = File{Data: []byte("x")} }, "reserved for the manifest"},
		{"file under file", func(m *Manifest, f map[string]File) { f["README.txt/x"] = File{Data: []byte("x")} }, `inside "README.txt", which is a file`},
		{"no content", func(m *Manifest, f map[string]File) { f["x"] = File{} }, "neither Data nor Path"},
		{"missing disk file", func(m *Manifest, f map[string]File) { f["x"] = File{Path: "/nonexistent/file"} }, `open "/nonexistent/file" for "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, files := testManifest(), testFiles()
			tt.mutate(&m, files)
			_, err := Pack(io.Discard, m, files)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

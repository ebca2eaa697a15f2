package artifacts

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUnpackRoundTrip(t *testing.T) {
	t.Parallel()
	data, id := packBytes(t, testManifest(), testFiles())
	_, dest := newDest(t)
	m, err := Unpack(t.Context(), bytes.NewReader(data), id, dest, Limits{})
	require.NoError(t, err)
	require.Equal(t, "image-tiles", m.Workflow)
	require.Equal(t, testManifest().Entrypoints, m.Entrypoints)
	require.ElementsMatch(t, testManifest().Tasks, m.Tasks)

	for name, f := range testFiles() {
		p := filepath.Join(dest, filepath.FromSlash(name))
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Equal(t, f.Data, got, name)
		st, err := os.Stat(p)
		require.NoError(t, err)
		want := fs.FileMode(0o644)
		if f.Executable {
			want = 0o755
		}
		require.Equal(t, want, st.Mode().Perm(), name)
	}
	mb, err := os.ReadFile(filepath.Join(dest, ManifestName))
	require.NoError(t, err)
	m2, err := DecodeManifest(mb)
	require.NoError(t, err)
	require.Equal(t, m, m2)

	// A second unpack to the same place is refused: dest must be fresh.
	_, err = Unpack(t.Context(), bytes.NewReader(data), id, dest, Limits{})
	require.ErrorIs(t, err, ErrExists)
}

func TestUnpackTampered(t *testing.T) {
	t.Parallel()
	data, id := packBytes(t, testManifest(), testFiles())
	for _, pos := range []int{0, len(data) / 2, len(data) - 1} {
		bad := bytes.Clone(data)
		bad[pos] ^= 0x01
		parent, dest := newDest(t)
		_, err := Unpack(t.Context(), bytes.NewReader(bad), id, dest, Limits{})
		require.ErrorIs(t, err, ErrDigestMismatch)
		require.ErrorContains(t, err, "tampered with or truncated")
		requireEmpty(t, parent)
	}
	// Truncated.
	parent, dest := newDest(t)
	_, err := Unpack(t.Context(), bytes.NewReader(data[:len(data)-10]), id, dest, Limits{})
	require.ErrorIs(t, err, ErrDigestMismatch)
	requireEmpty(t, parent)
	// Not a release id.
	_, err = Unpack(t.Context(), bytes.NewReader(data), "abc", dest, Limits{})
	require.ErrorIs(t, err, ErrInvalidID)
	requireEmpty(t, parent)
}

func TestUnpackCanceled(t *testing.T) {
	t.Parallel()
	data, id := packBytes(t, testManifest(), testFiles())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	parent, dest := newDest(t)
	_, err := Unpack(ctx, bytes.NewReader(data), id, dest, Limits{})
	require.ErrorIs(t, err, context.Canceled)
	requireEmpty(t, parent)
}

func TestUnpackHostile(t *testing.T) {
	t.Parallel()
	mf := reg(ManifestName, manifestJSON(t), 0o644)
	app := reg("bin/app", []byte("#!/bin/sh\n"), 0o755)
	tests := []struct {
		name    string
		entries []entry
		lim     Limits
		want    []string // substrings of the error
		invalid bool     // manifest error rather than ArchiveError
	}{
		{name: "absolute path", entries: []entry{mf, app, reg("/etc/evil", []byte("x"), 0o644)},
			want: []string{`entry "/etc/evil"`, "is absolute"}},
		{name: "dotdot", entries: []entry{mf, app, reg("../x", []byte("x"), 0o644)},
			want: []string{`entry "../x"`, `".." component`}},
		{name: "inner dotdot", entries: []entry{mf, app, reg("a/../../x", []byte("x"), 0o644)},
			want: []string{`entry "a/../../x"`, `".." component`}},
		{name: "dot component", entries: []entry{mf, app, reg("./x", []byte("x"), 0o644)},
			want: []string{`entry "./x"`, `"." component`}},
		{name: "symlink", entries: []entry{mf, app, {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/passwd"}}},
			want: []string{`entry "link"`, "symlink entries are not allowed"}},
		{name: "hard link", entries: []entry{mf, app, {hdr: tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "bin/app"}}},
			want: []string{`entry "hard"`, "hard link entries are not allowed"}},
		{name: "char device", entries: []entry{mf, app, {hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3, Mode: 0o666}}},
			want: []string{`entry "null"`, "character device entries are not allowed"}},
		{name: "block device", entries: []entry{mf, app, {hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}}},
			want: []string{`entry "sda"`, "block device entries are not allowed"}},
		{name: "fifo", entries: []entry{mf, app, {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}}},
			want: []string{`entry "pipe"`, "FIFO entries are not allowed"}},
		{name: "duplicate", entries: []entry{mf, app, reg("bin/app", []byte("other"), 0o755)},
			want: []string{`entry "bin/app"`, "duplicate entry"}},
		{name: "duplicate manifest", entries: []entry{mf, app, mf},
			want: []string{`entry "manifest.json"`, "duplicate entry"}},
		{name: "file under file", entries: []entry{mf, app, reg("bin/app/x", []byte("x"), 0o644)},
			want: []string{`entry "bin/app/x"`, `parent "bin/app" is a file`}},
		{name: "file over directory", entries: []entry{mf, app, reg("bin", []byte("x"), 0o644)},
			want: []string{`entry "bin"`, "conflicts with a directory"}},
		{name: "too many entries", lim: Limits{MaxEntries: 4},
			entries: []entry{mf, app, reg("a", nil, 0o644), reg("b", nil, 0o644), reg("c", nil, 0o644)},
			want:    []string{`entry "c"`, "more than MaxEntries (4) entries"}},
		{name: "oversize total", lim: Limits{MaxTotalBytes: 3000},
			entries: []entry{mf, app, reg("a", make([]byte, 1000), 0o644), reg("b", make([]byte, 2000), 0o644)},
			want:    []string{`entry "b"`, "over MaxTotalBytes (3000)"}},
		{name: "oversize file", lim: Limits{MaxFileBytes: 500},
			entries: []entry{mf, app, reg("big", make([]byte, 501), 0o644)},
			want:    []string{`entry "big"`, "501 bytes is over MaxFileBytes (500)"}},
		{name: "zstd bomb", entries: []entry{mf, app, reg("zeros", make([]byte, 8<<20), 0o644)},
			want: []string{`entry "zeros"`, "compression ratio over MaxRatio (100)"}},
		{name: "oversize artifact", lim: Limits{MaxArtifactBytes: 64},
			entries: []entry{mf, app},
			want:    []string{"larger than MaxArtifactBytes (64 bytes)"}},
		{name: "missing manifest", entries: []entry{app},
			want: []string{`entry "bin/app"`, "first entry must be manifest.json"}},
		{name: "manifest not first", entries: []entry{app, mf},
			want: []string{"first entry must be manifest.json"}},
		{name: "empty archive", entries: nil,
			want: []string{"archive is empty: no manifest.json"}},
		{name: "missing entrypoint", entries: []entry{mf, reg("bin/other", []byte("x"), 0o755)},
			want: []string{`entry "bin/app"`, "entrypoint for linux/amd64 is not a file in the archive"}},
		{name: "entrypoint is a directory", entries: []entry{mf, {hdr: tar.Header{Typeflag: tar.TypeDir, Name: "bin/app/", Mode: 0o755}}},
			want: []string{`entry "bin/app"`, "entrypoint for linux/amd64 is not a file"}},
		{name: "entrypoint not executable", entries: []entry{mf, reg("bin/app", []byte("x"), 0o644)},
			want: []string{`entry "bin/app"`, "entrypoint for linux/amd64 is not executable"}},
		{name: "invalid manifest", invalid: true, entries: []entry{reg(ManifestName, []byte(`{"format_version":1}`), 0o644), app},
			want: []string{`entry "manifest.json"`, "invalid manifest", "workflow slug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := buildArchive(t, tt.entries...)
			parent, dest := newDest(t)
			_, err := Unpack(t.Context(), bytes.NewReader(data), sha(data), dest, tt.lim)
			require.Error(t, err)
			if tt.invalid {
				require.ErrorIs(t, err, ErrInvalidManifest)
			} else {
				require.ErrorIs(t, err, ErrUnsafeArchive)
			}
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			requireEmpty(t, parent)
		})
	}
}

// A well-formed archive built by another tool (directory entries, PAX
// headers, a different zstd encoder) is accepted.
func TestUnpackForeignArchive(t *testing.T) {
	t.Parallel()
	long := "data/" + strings.Repeat("d", 150) + "/file"
	data := buildArchive(t,
		reg(ManifestName, manifestJSON(t), 0o644),
		entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o700}},
		reg("bin/app", []byte("#!/bin/sh\n"), 0o4755),
		entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: long, Size: 2, Format: tar.FormatPAX, PAXRecords: map[string]string{"comment": "x"}}, body: []byte("ok")},
	)
	_, dest := newDest(t)
	_, err := Unpack(t.Context(), bytes.NewReader(data), sha(data), dest, Limits{})
	require.NoError(t, err)
	st, err := os.Stat(filepath.Join(dest, "bin", "app"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o755), st.Mode(), "setuid and other bits are dropped")
	got, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(long)))
	require.NoError(t, err)
	require.Equal(t, "ok", string(got))
}

func FuzzUnpack(f *testing.F) {
	valid, _ := packBytes(f, testManifest(), testFiles())
	f.Add(valid)
	mf := reg(ManifestName, manifestJSON(f), 0o644)
	app := reg("bin/app", []byte("#!/bin/sh\n"), 0o755)
	f.Add(buildArchive(f, mf, app))
	f.Add(buildArchive(f, mf, app, reg("../x", []byte("x"), 0o644)))
	f.Add(buildArchive(f, mf, app, entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/"}}))
	f.Add(buildArchive(f, mf, app, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/"}}, reg("d/f", []byte("x"), 0o644)))
	f.Add([]byte{})
	f.Add([]byte("(\xb5/\xfd"))
	lim := Limits{MaxArtifactBytes: 1 << 20, MaxEntries: 64, MaxFileBytes: 1 << 20, MaxTotalBytes: 4 << 20, MaxWindowBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, dest := newDest(t)
		m, err := Unpack(context.Background(), bytes.NewReader(data), sha(data), dest, lim)
		if err != nil {
			requireEmpty(t, parent)
			return
		}
		require.NoError(t, m.Validate())
		ents, err := os.ReadDir(parent)
		require.NoError(t, err)
		require.Len(t, ents, 1)
		require.Equal(t, "release", ents[0].Name())
		require.NoError(t, filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			require.True(t, d.IsDir() || d.Type().IsRegular(), "%s is neither a file nor a directory", p)
			return nil
		}))
		for _, p := range m.Entrypoints {
			st, err := os.Stat(filepath.Join(dest, filepath.FromSlash(p)))
			require.NoError(t, err)
			require.NotZero(t, st.Mode().Perm()&0o111)
		}
	})
}

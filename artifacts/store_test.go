package artifacts

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/stretchr/testify/require"
)

// testStore is the conformance suite every Store passes. s must be empty.
func testStore(t *testing.T, s Store) {
	ctx := t.Context()
	get := func(t *testing.T, key string) string {
		t.Helper()
		rc, err := s.Get(ctx, key)
		require.NoError(t, err)
		defer rc.Close()
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		return string(b)
	}

	t.Run("missing", func(t *testing.T) {
		_, err := s.Get(ctx, "releases/none.tar.zst")
		require.ErrorIs(t, err, ErrNotFound)
		ok, err := s.Exists(ctx, "releases/none.tar.zst")
		require.NoError(t, err)
		require.False(t, ok)
		keys, err := s.List(ctx, "nothing/")
		require.NoError(t, err)
		require.Empty(t, keys)
	})
	t.Run("put get exists", func(t *testing.T) {
		require.NoError(t, s.Put(ctx, "releases/wf/a.tar.zst", strings.NewReader("alpha")))
		require.Equal(t, "alpha", get(t, "releases/wf/a.tar.zst"))
		ok, err := s.Exists(ctx, "releases/wf/a.tar.zst")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = s.Exists(ctx, "releases/wf")
		require.NoError(t, err)
		require.False(t, ok, "a prefix is not an object")
		ok, err = s.Exists(ctx, "releases/wf/a.tar.zst/x")
		require.NoError(t, err)
		require.False(t, ok)
		_, err = s.Get(ctx, "releases/wf/a.tar.zst/x")
		require.ErrorIs(t, err, ErrNotFound)
	})
	t.Run("overwrite", func(t *testing.T) {
		require.NoError(t, s.Put(ctx, "over/k", strings.NewReader("one")))
		require.NoError(t, s.Put(ctx, "over/k", strings.NewReader("two")))
		require.Equal(t, "two", get(t, "over/k"))
	})
	t.Run("empty and large", func(t *testing.T) {
		require.NoError(t, s.Put(ctx, "sizes/empty", strings.NewReader("")))
		require.Empty(t, get(t, "sizes/empty"))
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		require.NoError(t, s.Put(ctx, "sizes/big", bytes.NewReader(big)))
		require.Equal(t, string(big), get(t, "sizes/big"))
	})
	t.Run("list", func(t *testing.T) {
		for _, k := range []string{"list/b/2", "list/a/1", "list/a/10", "list/ab", "lists/x"} {
			require.NoError(t, s.Put(ctx, k, strings.NewReader(k)))
		}
		keys, err := s.List(ctx, "list/")
		require.NoError(t, err)
		require.Equal(t, []string{"list/a/1", "list/a/10", "list/ab", "list/b/2"}, keys)
		keys, err = s.List(ctx, "list/a")
		require.NoError(t, err)
		require.Equal(t, []string{"list/a/1", "list/a/10", "list/ab"}, keys)
		keys, err = s.List(ctx, "list/a/1")
		require.NoError(t, err)
		require.Equal(t, []string{"list/a/1", "list/a/10"}, keys)
		keys, err = s.List(ctx, "")
		require.NoError(t, err)
		require.Contains(t, keys, "lists/x")
		require.Contains(t, keys, "releases/wf/a.tar.zst")
	})
	t.Run("delete", func(t *testing.T) {
		require.NoError(t, s.Put(ctx, "del/a/1", strings.NewReader("1")))
		require.NoError(t, s.Put(ctx, "del/a/2", strings.NewReader("2")))
		require.NoError(t, s.Put(ctx, "del/ab", strings.NewReader("3")))
		require.NoError(t, s.Put(ctx, "delx", strings.NewReader("4")))
		require.NoError(t, s.Delete(ctx, "del/a/1"))
		_, err := s.Get(ctx, "del/a/1")
		require.ErrorIs(t, err, ErrNotFound)
		require.NoError(t, s.Delete(ctx, "del/a/1"), "deleting a missing key is no error")
		require.NoError(t, s.Delete(ctx, "del/a"), "a prefix is not an object: nothing to delete")
		require.Equal(t, "2", get(t, "del/a/2"))

		n, err := s.DeletePrefix(ctx, "del/a")
		require.NoError(t, err)
		require.Equal(t, 2, n, "del/a/2 and del/ab")
		keys, err := s.List(ctx, "del")
		require.NoError(t, err)
		require.Equal(t, []string{"delx"}, keys)
		n, err = s.DeletePrefix(ctx, "del/")
		require.NoError(t, err)
		require.Zero(t, n)
		require.NoError(t, s.Put(ctx, "del/a/3", strings.NewReader("again")), "a deleted prefix can be written again")
		require.Equal(t, "again", get(t, "del/a/3"))

		_, err = s.DeletePrefix(ctx, "")
		require.ErrorIs(t, err, ErrInvalidKey)
		require.ErrorContains(t, err, "whole store")
		_, err = s.DeletePrefix(ctx, "../x")
		require.ErrorIs(t, err, ErrInvalidKey)
		require.ErrorIs(t, s.Delete(ctx, "../x"), ErrInvalidKey)
		require.Equal(t, "4", get(t, "delx"))
	})
	t.Run("invalid keys", func(t *testing.T) {
		for _, k := range []string{"", "/abs", "../x", "a/../../x", "a//b", "a/", "./a", `a\b`} {
			require.ErrorIs(t, s.Put(ctx, k, strings.NewReader("x")), ErrInvalidKey, "key %q", k)
			_, err := s.Get(ctx, k)
			require.ErrorIs(t, err, ErrInvalidKey, "key %q", k)
			_, err = s.Exists(ctx, k)
			require.ErrorIs(t, err, ErrInvalidKey, "key %q", k)
		}
		_, err := s.List(ctx, "../")
		require.ErrorIs(t, err, ErrInvalidKey)
	})
	t.Run("canceled put stores nothing", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, s.Put(cctx, "canceled/k", strings.NewReader("x")), context.Canceled)
		ok, err := s.Exists(ctx, "canceled/k")
		require.NoError(t, err)
		require.False(t, ok)
	})
}

func TestFileStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := OpenStore("file://" + filepath.ToSlash(dir))
	require.NoError(t, err)
	testStore(t, s)
	requireEmpty(t, filepath.Join(dir, tmpDirName))

	// DeletePrefix leaves no empty directories behind; Delete leaves them.
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, "prune/x/y", strings.NewReader("y")))
	require.NoError(t, s.Put(ctx, "prune/z", strings.NewReader("z")))
	require.NoError(t, s.Delete(ctx, "prune/z"))
	require.DirExists(t, filepath.Join(dir, "prune"))
	n, err := s.DeletePrefix(ctx, "prune/")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoDirExists(t, filepath.Join(dir, "prune"))
	require.DirExists(t, dir)
}

func TestS3Store(t *testing.T) {
	t.Parallel()
	m := testenv.NewMinIO(t)
	bucket := m.NewBucket(t)
	t.Run("bucket", func(t *testing.T) {
		t.Parallel()
		testStore(t, newS3Store(t, m, S3Options{Bucket: bucket}))
	})
	t.Run("prefix", func(t *testing.T) {
		t.Parallel()
		testStore(t, newS3Store(t, m, S3Options{Bucket: m.NewBucket(t), Prefix: "team/a"}))
	})
}

func TestOpenStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := OpenStore("file://localhost" + filepath.ToSlash(dir))
	require.NoError(t, err)
	require.Equal(t, dir, s.(*FileStore).Root)
	for url, want := range map[string]string{
		"file://relative/dir": `host "relative" is not allowed`,
		"file:relative":       "needs an absolute path",
		"/just/a/path":        "missing scheme",
		"ftp://host/x":        `unsupported scheme "ftp"`,
		"file:///tmp/x?a=b":   "no query or fragment",
	} {
		_, err := OpenStore(url)
		require.ErrorContains(t, err, want, url)
	}
}

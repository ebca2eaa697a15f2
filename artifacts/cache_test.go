package artifacts

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fetcher serves one artifact and counts fetches.
type fetcher struct {
	data  []byte
	calls atomic.Int32
}

func (f *fetcher) fetch(context.Context) (io.ReadCloser, error) {
	f.calls.Add(1)
	return io.NopCloser(bytes.NewReader(f.data)), nil
}

// release packs a release whose content differs by variant but not in size.
func release(t *testing.T, variant byte) (*fetcher, string) {
	t.Helper()
	files := testFiles()
	files["variant"] = File{Data: bytes.Repeat([]byte{variant}, 4096)}
	data, id := packBytes(t, testManifest(), files)
	return &fetcher{data: data}, id
}

// fakeClock returns strictly increasing times.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Minute)
		return now
	}
}

func TestCacheGet(t *testing.T) {
	t.Parallel()
	c := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	f, id := release(t, 'a')

	path, m, err := c.Get(t.Context(), id, f.fetch)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(c.Dir, id), path)
	require.Equal(t, "image-tiles", m.Workflow)
	require.FileExists(t, filepath.Join(path, "bin", "linux-amd64", "tiles"))
	require.EqualValues(t, 1, f.calls.Load())

	path2, m2, err := c.Get(t.Context(), id, f.fetch)
	require.NoError(t, err)
	require.Equal(t, path, path2)
	require.Equal(t, m, m2)
	require.EqualValues(t, 1, f.calls.Load(), "a cached release is not fetched again")

	// A fresh Cache on the same directory (a restarted runner) uses it too.
	c2 := &Cache{Dir: c.Dir}
	_, _, err = c2.Get(t.Context(), id, f.fetch)
	require.NoError(t, err)
	require.EqualValues(t, 1, f.calls.Load())
}

func TestCacheConcurrentGet(t *testing.T) {
	t.Parallel()
	c := &Cache{Dir: t.TempDir()}
	f, id := release(t, 'a')
	release := make(chan struct{})
	slow := func(ctx context.Context) (io.ReadCloser, error) {
		<-release
		return f.fetch(ctx)
	}
	var wg sync.WaitGroup
	paths := make([]string, 8)
	errs := make([]error, 8)
	for i := range paths {
		wg.Go(func() { paths[i], _, errs[i] = c.Get(t.Context(), id, slow) })
	}
	close(release)
	wg.Wait()
	for i := range paths {
		require.NoError(t, errs[i])
		require.Equal(t, filepath.Join(c.Dir, id), paths[i])
	}
	require.EqualValues(t, 1, f.calls.Load())
}

func TestCacheRefusesBadArtifacts(t *testing.T) {
	t.Parallel()
	c := &Cache{Dir: t.TempDir()}
	f, id := release(t, 'a')
	tampered := bytes.Clone(f.data)
	tampered[len(tampered)/2] ^= 1
	bad := &fetcher{data: tampered}
	_, _, err := c.Get(t.Context(), id, bad.fetch)
	require.ErrorIs(t, err, ErrDigestMismatch)
	requireEmpty(t, c.Dir)

	notFound := func(context.Context) (io.ReadCloser, error) { return nil, ErrNotFound }
	_, _, err = c.Get(t.Context(), id, notFound)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorContains(t, err, "fetch")

	_, _, err = c.Get(t.Context(), "../../etc", f.fetch)
	require.ErrorIs(t, err, ErrInvalidID)

	// After failures, a good artifact still gets in.
	_, _, err = c.Get(t.Context(), id, f.fetch)
	require.NoError(t, err)
}

func TestCacheRepairsUnmarkedRelease(t *testing.T) {
	t.Parallel()
	c := &Cache{Dir: t.TempDir()}
	f, id := release(t, 'a')
	// A crash after unpacking but before the marker leaves a bare directory.
	require.NoError(t, os.MkdirAll(filepath.Join(c.Dir, id, "junk"), 0o755))
	path, _, err := c.Get(t.Context(), id, f.fetch)
	require.NoError(t, err)
	require.NoDirExists(t, filepath.Join(path, "junk"))
	require.EqualValues(t, 1, f.calls.Load())
}

func TestCacheEvict(t *testing.T) {
	t.Parallel()
	c := &Cache{Dir: t.TempDir(), now: fakeClock()}
	fa, a := release(t, 'a')
	fb, b := release(t, 'b')
	fc, cid := release(t, 'c')
	for _, r := range []struct {
		f  *fetcher
		id string
	}{{fb, b}, {fc, cid}, {fa, a}} {
		_, _, err := c.Get(t.Context(), r.id, r.f.fetch)
		require.NoError(t, err)
	}
	// Use a again: b is now the least recently used, then c.
	_, _, err := c.Get(t.Context(), a, fa.fetch)
	require.NoError(t, err)

	size, err := dirSize(filepath.Join(c.Dir, a))
	require.NoError(t, err)

	removed, err := c.Evict(nil)
	require.NoError(t, err)
	require.Empty(t, removed, "MaxBytes 0 means no bound")

	c.MaxBytes = 2 * size
	removed, err = c.Evict(map[string]bool{b: true})
	require.NoError(t, err)
	require.Equal(t, []string{cid}, removed, "the oldest not in use goes")
	require.DirExists(t, filepath.Join(c.Dir, a))
	require.DirExists(t, filepath.Join(c.Dir, b))
	require.NoDirExists(t, filepath.Join(c.Dir, cid))
	require.NoFileExists(t, filepath.Join(c.Dir, cid+markerSuffix))

	c.MaxBytes = 1
	removed, err = c.Evict(map[string]bool{b: true, a: true})
	require.NoError(t, err)
	require.Empty(t, removed, "releases in use are never evicted")

	// An evicted release is fetched again.
	_, _, err = c.Get(t.Context(), cid, fc.fetch)
	require.NoError(t, err)
	require.EqualValues(t, 2, fc.calls.Load())
	require.EqualValues(t, 1, fb.calls.Load())
}

func TestCacheWaiterRetriesAfterCanceledLeader(t *testing.T) {
	t.Parallel()
	c := &Cache{Dir: t.TempDir()}
	f, id := release(t, 'a')
	started := make(chan struct{})
	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	blocking := func(ctx context.Context) (io.ReadCloser, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	leaderErr := make(chan error, 1)
	go func() {
		_, _, err := c.Get(leaderCtx, id, blocking)
		leaderErr <- err
	}()
	<-started
	waiterDone := make(chan error, 1)
	go func() {
		_, _, err := c.Get(t.Context(), id, f.fetch)
		waiterDone <- err
	}()
	cancelLeader()
	require.True(t, errors.Is(<-leaderErr, context.Canceled))
	require.NoError(t, <-waiterDone)
}

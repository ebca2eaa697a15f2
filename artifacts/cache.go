package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runfleet/runfleet/internal/atomicfile"
)

// markerSuffix names the marker written next to a release directory once it
// is verified and completely unpacked: <Dir>/<id>.ok holds the unpacked size
// in bytes; its mtime is the last use.
const markerSuffix = ".ok"

// staleTempAge is how old a leftover temporary file must be before Evict
// removes it (it may belong to an unpack in progress in another process).
const staleTempAge = time.Hour

// Cache is a content-addressed local cache of unpacked releases: release id
// ID lives in <Dir>/<ID>. Use one Cache per directory per process; its
// methods are safe for concurrent use.
type Cache struct {
	// Dir is the cache directory, created if needed. Required.
	Dir string
	// MaxBytes is the unpacked size Evict shrinks the cache to. Default: 0,
	// no bound (Evict removes nothing).
	MaxBytes int64
	// Limits are passed to Unpack. Default: DefaultLimits.
	Limits Limits

	now      func() time.Time // for tests; default time.Now
	mu       sync.Mutex
	inflight map[string]*cacheCall
}

type cacheCall struct {
	done chan struct{}
	path string
	m    Manifest
	err  error
}

// Get returns the directory holding release id unpacked, and its manifest.
// If it is not cached, Get calls fetch for the artifact, verifies its digest
// and unpacks it safely (see Unpack). Concurrent Gets of one id fetch once.
// Signatures are the caller's to check (Verify) before calling Get.
func (c *Cache) Get(ctx context.Context, id string, fetch func(ctx context.Context) (io.ReadCloser, error)) (string, Manifest, error) {
	if err := ValidateID(id); err != nil {
		return "", Manifest{}, fmt.Errorf("cache get: %w", err)
	}
	if c.Dir == "" {
		return "", Manifest{}, errors.New("cache get: Cache.Dir is not set")
	}
	for {
		c.mu.Lock()
		if call, ok := c.inflight[id]; ok {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return "", Manifest{}, fmt.Errorf("cache get release %s: %w", id, ctx.Err())
			}
			if call.err != nil && isContextErr(call.err) && ctx.Err() == nil {
				continue // the caller doing the work gave up; try again ourselves
			}
			return call.path, call.m, call.err
		}
		path, m, ok := c.lookup(id)
		if ok {
			c.mu.Unlock()
			return path, m, nil
		}
		call := &cacheCall{done: make(chan struct{})}
		if c.inflight == nil {
			c.inflight = make(map[string]*cacheCall)
		}
		c.inflight[id] = call
		c.mu.Unlock()

		call.path, call.m, call.err = c.fill(ctx, id, fetch)
		c.mu.Lock()
		delete(c.inflight, id)
		c.mu.Unlock()
		close(call.done)
		return call.path, call.m, call.err
	}
}

// lookup returns a cached release and marks it used. Called with c.mu held.
func (c *Cache) lookup(id string) (string, Manifest, bool) {
	dir := filepath.Join(c.Dir, id)
	marker := dir + markerSuffix
	if st, err := os.Lstat(marker); err != nil || !st.Mode().IsRegular() {
		return "", Manifest{}, false
	}
	b, err := readFileLimit(filepath.Join(dir, ManifestName), MaxManifestBytes)
	if err != nil {
		return "", Manifest{}, false
	}
	m, err := DecodeManifest(b)
	if err != nil {
		return "", Manifest{}, false
	}
	now := c.clock()
	_ = os.Chtimes(marker, now, now)
	return dir, m, true
}

func (c *Cache) fill(ctx context.Context, id string, fetch func(ctx context.Context) (io.ReadCloser, error)) (string, Manifest, error) {
	dir := filepath.Join(c.Dir, id)
	marker := dir + markerSuffix
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", Manifest{}, fmt.Errorf("cache get release %s: %w", id, err)
	}
	// Anything here without a valid marker is a leftover of a crash or damage.
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", Manifest{}, fmt.Errorf("cache get release %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", Manifest{}, fmt.Errorf("cache get release %s: %w", id, err)
	}
	rc, err := fetch(ctx)
	if err != nil {
		return "", Manifest{}, fmt.Errorf("cache get release %s: fetch: %w", id, err)
	}
	defer rc.Close()
	m, err := Unpack(ctx, rc, id, dir, c.Limits)
	if err != nil {
		return "", Manifest{}, fmt.Errorf("cache get: %w", err)
	}
	size, err := dirSize(dir)
	if err == nil {
		err = atomicfile.Write(marker, filepath.Join(filepath.Dir(marker), ".tmp-*"), func(f *os.File) error {
			_, err := f.Write([]byte(strconv.FormatInt(size, 10) + "\n"))
			return err
		})
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", Manifest{}, fmt.Errorf("cache get release %s: %w", id, err)
	}
	now := c.clock()
	_ = os.Chtimes(marker, now, now)
	return dir, m, nil
}

// Evict removes the least recently used releases whose ids are not in inUse
// until the cache holds at most MaxBytes, and returns the removed ids. It
// also removes unmarked release directories (left by a crash) and temporary
// files older than an hour. With MaxBytes 0 it removes no release.
func (c *Cache) Evict(inUse map[string]bool) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache evict: %w", err)
	}
	type release struct {
		id   string
		size int64
		used time.Time
	}
	var (
		rels   []release
		total  int64
		errs   []error
		marked = map[string]bool{}
	)
	for _, e := range ents {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, markerSuffix); ok && ValidateID(id) == nil {
			info, err := e.Info()
			if err != nil {
				continue
			}
			b, err := readFileLimit(filepath.Join(c.Dir, name), 64)
			if err != nil {
				continue
			}
			size, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				continue
			}
			marked[id] = true
			rels = append(rels, release{id, size, info.ModTime()})
			total += size
		}
	}
	now := c.clock()
	for _, e := range ents {
		name := e.Name()
		switch {
		case ValidateID(name) == nil && !marked[name] && c.inflight[name] == nil:
			errs = append(errs, os.RemoveAll(filepath.Join(c.Dir, name)))
		case strings.HasPrefix(name, ".artifact-") || strings.HasPrefix(name, ".unpack-") || strings.HasPrefix(name, ".tmp-"):
			if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > staleTempAge {
				errs = append(errs, os.RemoveAll(filepath.Join(c.Dir, name)))
			}
		}
	}
	if c.MaxBytes <= 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(rels, func(a, b release) int { return a.used.Compare(b.used) })
	var removed []string
	for _, r := range rels {
		if total <= c.MaxBytes {
			break
		}
		if inUse[r.id] || c.inflight[r.id] != nil {
			continue
		}
		dir := filepath.Join(c.Dir, r.id)
		if err := os.Remove(dir + markerSuffix); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, os.RemoveAll(dir))
		total -= r.size
		removed = append(removed, r.id)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("cache evict: %w", err)
	}
	return removed, nil
}

func (c *Cache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, nil
}

func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	return total, err
}

package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/runfleet/runfleet/internal/atomicfile"
)

// Store is a minimal object store releases are published to. Keys are slash
// paths such as "releases/tiles/<id>.tar.zst": relative, no "." or ".."
// components, no empty components.
type Store interface {
	// Put stores the content of r under key, replacing any previous object.
	// Readers see either the old or the new object, never a partial one.
	Put(ctx context.Context, key string, r io.Reader) error
	// Get opens the object at key; the error wraps ErrNotFound if there is none.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Exists reports whether an object is stored at key.
	Exists(ctx context.Context, key string) (bool, error)
	// List returns the keys starting with prefix (a plain string prefix, as
	// in S3), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object at key; a key with no object is no error.
	Delete(ctx context.Context, key string) error
	// DeletePrefix removes every object whose key starts with prefix (a
	// plain string prefix, as List takes; "" is refused so that a slip
	// cannot empty the store) and returns how many it removed. An error
	// may leave some removed: calling again finishes the work.
	DeletePrefix(ctx context.Context, prefix string) (int, error)
}

// ErrNotFound is wrapped by Store.Get when no object is stored at the key.
var ErrNotFound = errors.New("object not found")

// ErrInvalidKey is wrapped when a store key or prefix is malformed.
var ErrInvalidKey = errors.New("invalid object key")

// OpenStore opens the store named by rawURL:
//
//   - "file:///abs/dir": a [FileStore] in a local directory;
//   - "s3://bucket/optional/prefix": an [S3Store], configured as
//     [NewS3Store] is with the AWS SDK's defaults (credentials chain,
//     AWS_ENDPOINT_URL_S3, AWS_REGION, ...). Query parameters override
//     them: endpoint=URL (e.g. http://127.0.0.1:9000 for MinIO; buckets are
//     then addressed path-style), region=NAME and path_style=true.
func OpenStore(rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold credentials
		}
		return nil, fmt.Errorf("open store: not a valid URL: %w", err)
	}
	// Errors show the URL without its password, and without a query that
	// may hold an endpoint with credentials.
	rawURL = u.Redacted()
	if strings.Contains(u.RawQuery, "@") {
		rawURL = strings.Replace(rawURL, "?"+u.RawQuery, "?…", 1)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("open store %q: a file URL needs an absolute path, e.g. file:///var/lib/runfleet/store (host %q is not allowed)", rawURL, u.Host)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("open store %q: a file URL takes no query or fragment", rawURL)
		}
		if !path.IsAbs(u.Path) {
			return nil, fmt.Errorf("open store %q: a file URL needs an absolute path, e.g. file:///var/lib/runfleet/store", rawURL)
		}
		return NewFileStore(filepath.FromSlash(u.Path))
	case "s3":
		opts, err := parseS3URL(u)
		if err != nil {
			return nil, fmt.Errorf("open store %q: %w", rawURL, err)
		}
		s, err := NewS3Store(context.Background(), opts)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	case "":
		return nil, fmt.Errorf("open store %q: missing scheme; use file:///abs/dir or s3://bucket/prefix", rawURL)
	default:
		return nil, fmt.Errorf("open store %q: unsupported scheme %q; use file:///abs/dir or s3://bucket/prefix", rawURL, u.Scheme)
	}
}

// tmpDirName is the FileStore's directory for writes in progress; no key may
// start with it.
const tmpDirName = ".tmp"

// FileStore is a Store in a local directory: key k is the file <Root>/<k>.
// Writes are atomic (temporary file, fsync, rename).
type FileStore struct {
	// Root is the store directory.
	Root string
}

// NewFileStore returns a FileStore in dir, creating it if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("open file store: %q is not an absolute path", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, tmpDirName), 0o755); err != nil {
		return nil, fmt.Errorf("open file store: %w", err)
	}
	return &FileStore{Root: dir}, nil
}

// maxStoreKey is the longest store key: S3's limit for object keys. (A
// FileStore further needs each component within the file system's 255
// bytes, which the OS reports.)
const maxStoreKey = 1024

func checkKey(key string) error {
	if err := checkSlashPath(key, maxStoreKey); err != nil {
		return fmt.Errorf("%w %q: key %v", ErrInvalidKey, key, err)
	}
	if key == tmpDirName || strings.HasPrefix(key, tmpDirName+"/") {
		return fmt.Errorf("%w %q: keys under %s/ are reserved", ErrInvalidKey, key, tmpDirName)
	}
	return nil
}

func (s *FileStore) path(key string) string {
	return filepath.Join(s.Root, filepath.FromSlash(key))
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	err := atomicfile.Write(s.path(key), filepath.Join(s.Root, tmpDirName, "put-*"), func(f *os.File) error {
		_, err := io.Copy(f, ctxReader{ctx, r})
		return err
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(s.path(key))
	if isMissing(err) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// Exists implements Store.
func (s *FileStore) Exists(ctx context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, fmt.Errorf("exists: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("exists %s: %w", key, err)
	}
	st, err := os.Stat(s.path(key))
	if isMissing(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("exists %s: %w", key, err)
	}
	return st.Mode().IsRegular(), nil
}

// List implements Store.
func (s *FileStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkPrefix("list", prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names.
	base := prefix[:strings.LastIndexByte(prefix, '/')+1]
	var keys []string
	err := filepath.WalkDir(s.path(base), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if isMissing(err) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(s.Root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if key == tmpDirName {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(key, prefix) && checkKey(key) == nil {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// checkPrefix checks a List or DeletePrefix prefix.
func checkPrefix(op, prefix string) error {
	if strings.ContainsAny(prefix, "\\\x00") || strings.HasPrefix(prefix, "/") ||
		slices.Contains(strings.Split(prefix, "/"), "..") {
		return fmt.Errorf("%s: %w: prefix %q must be a relative slash path", op, ErrInvalidKey, prefix)
	}
	if op == "delete prefix" && prefix == "" {
		return fmt.Errorf("%s: %w: an empty prefix would delete the whole store", op, ErrInvalidKey)
	}
	return nil
}

// Delete implements Store. It leaves the key's directories, even empty: a
// concurrent Put into them must not lose its directory.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	p := s.path(key)
	st, err := os.Lstat(p)
	if isMissing(err) || (err == nil && !st.Mode().IsRegular()) {
		return nil // not an object
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := os.Remove(p); err != nil && !isMissing(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// pruneDirs removes dir and its parents below the root while they are
// empty; a directory another writer just filled stays (Remove fails).
func (s *FileStore) pruneDirs(dir string) {
	for dir != s.Root && strings.HasPrefix(dir, s.Root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// DeletePrefix implements Store. Directories it leaves empty are removed.
func (s *FileStore) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if err := checkPrefix("delete prefix", prefix); err != nil {
		return 0, err
	}
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return 0, fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	for i, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			return i, fmt.Errorf("delete prefix %q: %w", prefix, err)
		}
	}
	for _, k := range slices.Backward(keys) {
		s.pruneDirs(filepath.Dir(s.path(k)))
	}
	return len(keys), nil
}

// isMissing reports a path that does not exist, including one through a
// regular file (key "a/b" when "a" is an object).
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

package artifacts

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/runfleet/runfleet/internal/atomicfile"
)

// Limits bound what Unpack accepts. A zero field means its default, the value
// in DefaultLimits.
type Limits struct {
	// MaxArtifactBytes bounds the compressed artifact. Default: 1 GiB.
	MaxArtifactBytes int64
	// MaxEntries bounds the number of tar entries. Default: 10,000.
	MaxEntries int
	// MaxFileBytes bounds each unpacked file. Default: 1 GiB.
	MaxFileBytes int64
	// MaxTotalBytes bounds the sum of unpacked file sizes. Default: 2 GiB.
	MaxTotalBytes int64
	// MaxRatio bounds unpacked bytes / compressed bytes. It applies once the
	// unpacked total passes RatioFloor (1 MiB), so tiny artifacts are never
	// refused for compressing well. Default: 100.
	MaxRatio float64
	// MaxWindowBytes bounds the zstd window, hence the decoder's memory.
	// Default: 32 MiB.
	MaxWindowBytes uint64
}

// RatioFloor is the unpacked size below which Limits.MaxRatio is not checked.
const RatioFloor = 1 << 20

// DefaultLimits are the limits used for zero Limits fields.
var DefaultLimits = Limits{
	MaxArtifactBytes: 1 << 30,
	MaxEntries:       10_000,
	MaxFileBytes:     1 << 30,
	MaxTotalBytes:    2 << 30,
	MaxRatio:         100,
	MaxWindowBytes:   32 << 20,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxArtifactBytes <= 0 {
		l.MaxArtifactBytes = d.MaxArtifactBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.MaxRatio <= 0 || math.IsNaN(l.MaxRatio) {
		l.MaxRatio = d.MaxRatio
	}
	if l.MaxWindowBytes < zstd.MinWindowSize {
		l.MaxWindowBytes = d.MaxWindowBytes
	}
	return l
}

var (
	// ErrDigestMismatch is returned when an artifact's SHA-256 is not the
	// release id asked for: it was tampered with or truncated.
	ErrDigestMismatch = errors.New("artifact digest does not match the release id")
	// ErrUnsafeArchive is wrapped by every ArchiveError: the archive breaks a
	// rule of the format or a limit.
	ErrUnsafeArchive = errors.New("unsafe or invalid archive")
	// ErrExists is returned when the destination of Unpack already exists.
	ErrExists = errors.New("destination already exists")
)

// ArchiveError reports an archive refused by Unpack: the entry (empty for
// the archive as a whole) and the rule it breaks.
type ArchiveError struct {
	Entry string
	Rule  string
	Err   error // underlying error, if any
}

func (e *ArchiveError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("%v: %s", ErrUnsafeArchive, e.Rule)
	}
	return fmt.Sprintf("%v: entry %q: %s", ErrUnsafeArchive, e.Entry, e.Rule)
}

// Is makes errors.Is(err, ErrUnsafeArchive) true.
func (e *ArchiveError) Is(target error) bool { return target == ErrUnsafeArchive }

func (e *ArchiveError) Unwrap() error { return e.Err }

func refuse(entry, format string, args ...any) error {
	return &ArchiveError{Entry: entry, Rule: fmt.Sprintf(format, args...)}
}

// Unpack reads the artifact from r, checks that its SHA-256 is wantID, and
// unpacks it into dest, which must not exist (its parent must). The artifact
// is first stored in a temporary file in dest's parent while hashing, so a
// digest mismatch is refused before anything is extracted; the files are
// then extracted into a fresh temporary directory renamed to dest at the end.
// On any error nothing is left in dest or its parent.
//
// Errors wrap ErrInvalidID, ErrExists, ErrDigestMismatch, ErrUnsafeArchive
// (an *ArchiveError naming the entry and rule) or ErrInvalidManifest.
func Unpack(ctx context.Context, r io.Reader, wantID string, dest string, lim Limits) (Manifest, error) {
	if err := ValidateID(wantID); err != nil {
		return Manifest{}, fmt.Errorf("unpack: %w", err)
	}
	lim = lim.withDefaults()
	dest, err := filepath.Abs(dest)
	if err != nil {
		return Manifest{}, fmt.Errorf("unpack: %w", err)
	}
	parent := filepath.Dir(dest)
	if _, err := os.Lstat(dest); err == nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w: %s", wantID, ErrExists, dest)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}

	tmp, err := os.CreateTemp(parent, ".artifact-*.tar.zst")
	if err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, r}, lim.MaxArtifactBytes+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: read artifact: %w", wantID, err)
	}
	if n > lim.MaxArtifactBytes {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID,
			refuse("", "artifact is larger than MaxArtifactBytes (%d bytes)", lim.MaxArtifactBytes))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantID {
		return Manifest{}, fmt.Errorf("unpack release %s: %w: the artifact's SHA-256 is %s (%d bytes); it was tampered with or truncated", wantID, ErrDigestMismatch, got, n)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}

	work, err := os.MkdirTemp(parent, ".unpack-*")
	if err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(work)
		}
	}()
	m, err := extract(ctx, tmp, n, work, lim)
	if err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}
	if err := atomicfile.SyncDir(work); err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: %w", wantID, err)
	}
	if err := os.Rename(work, dest); err != nil {
		return Manifest{}, fmt.Errorf("unpack release %s: move into place: %w", wantID, err)
	}
	done = true
	_ = atomicfile.SyncDir(parent)
	return m, nil
}

// Entry kinds tracked while extracting.
const (
	kindFile        = 'f'
	kindDir         = 'd' // explicit directory entry
	kindImpliedDir  = 'i' // parent of an entry, not (yet) an entry itself
	executableBits  = 0o111
	unpackedDirPerm = 0o755
)

// extract unpacks the artifact in f (compressed bytes long) into dir.
func extract(ctx context.Context, f io.Reader, compressed int64, dir string, lim Limits) (Manifest, error) {
	zr, err := zstd.NewReader(bufio.NewReader(f),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(lim.MaxWindowBytes),
		zstd.WithDecoderMaxMemory(lim.MaxWindowBytes),
	)
	if err != nil {
		return Manifest{}, fmt.Errorf("create zstd decoder: %w", err)
	}
	defer zr.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Manifest{}, err
	}
	defer root.Close()

	ratioCap := int64(math.MaxInt64)
	if c := lim.MaxRatio * float64(compressed); c < math.MaxInt64/2 {
		ratioCap = max(RatioFloor, int64(c))
	}
	tr := tar.NewReader(ctxReader{ctx, zr})
	var (
		m       Manifest
		total   int64
		entries int
		seen    = map[string]byte{}
		execs   = map[string]bool{}
	)
	for {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return Manifest{}, ctxErr
			}
			return Manifest{}, &ArchiveError{Rule: fmt.Sprintf("cannot read archive after %d entries: %v", entries, err), Err: err}
		}
		entries++
		name := hdr.Name
		if entries > lim.MaxEntries {
			return Manifest{}, refuse(name, "more than MaxEntries (%d) entries", lim.MaxEntries)
		}
		isDir := hdr.Typeflag == tar.TypeDir
		if isDir && len(name) > 1 && name[len(name)-1] == '/' {
			name = name[:len(name)-1]
		}
		if err := checkEntryPath(name); err != nil {
			return Manifest{}, refuse(hdr.Name, "path %v", err)
		}
		if !isDir && hdr.Typeflag != tar.TypeReg {
			return Manifest{}, refuse(name, "%s entries are not allowed: only regular files and directories", typeName(hdr.Typeflag))
		}
		if entries == 1 && (isDir || name != ManifestName) {
			return Manifest{}, refuse(name, "the first entry must be %s: the archive has no manifest where it belongs", ManifestName)
		}
		switch k := seen[name]; {
		case k == kindFile || k == kindDir:
			return Manifest{}, refuse(name, "duplicate entry")
		case k == kindImpliedDir && !isDir:
			return Manifest{}, refuse(name, "file conflicts with a directory of the same path")
		}
		for p := parentDir(name); p != ""; p = parentDir(p) {
			switch seen[p] {
			case kindFile:
				return Manifest{}, refuse(name, "parent %q is a file", p)
			case 0:
				seen[p] = kindImpliedDir
			}
		}
		if isDir {
			seen[name] = kindDir
			if err := root.MkdirAll(name, unpackedDirPerm); err != nil {
				return Manifest{}, &ArchiveError{Entry: name, Rule: fmt.Sprintf("create directory: %v", err), Err: err}
			}
			continue
		}
		seen[name] = kindFile

		size := hdr.Size
		switch {
		case size < 0:
			return Manifest{}, refuse(name, "negative size %d", size)
		case size > lim.MaxFileBytes:
			return Manifest{}, refuse(name, "size %d bytes is over MaxFileBytes (%d)", size, lim.MaxFileBytes)
		case size > lim.MaxTotalBytes-total:
			return Manifest{}, refuse(name, "unpacked total would reach %d bytes, over MaxTotalBytes (%d)", total+size, lim.MaxTotalBytes)
		case size > ratioCap-total:
			return Manifest{}, refuse(name, "compression ratio over MaxRatio (%g): %d compressed bytes would unpack to %d bytes or more", lim.MaxRatio, compressed, total+size)
		case name == ManifestName && size > MaxManifestBytes:
			return Manifest{}, refuse(name, "size %d bytes is over the manifest limit (%d)", size, MaxManifestBytes)
		}
		perm := fs.FileMode(0o644)
		if hdr.Mode&executableBits != 0 {
			perm = 0o755
			execs[name] = true
		}
		var body io.Reader = tr
		var manifestBuf []byte
		if name == ManifestName {
			manifestBuf, err = io.ReadAll(tr)
			if err != nil {
				return Manifest{}, &ArchiveError{Entry: name, Rule: fmt.Sprintf("read: %v", err), Err: err}
			}
			if m, err = DecodeManifest(manifestBuf); err != nil {
				return Manifest{}, fmt.Errorf("entry %q: %w", name, err)
			}
			body = bytes.NewReader(manifestBuf)
		}
		if p := parentDir(name); p != "" {
			if err := root.MkdirAll(p, unpackedDirPerm); err != nil {
				return Manifest{}, &ArchiveError{Entry: name, Rule: fmt.Sprintf("create parent directory: %v", err), Err: err}
			}
		}
		n, err := writeFile(root, name, perm, body)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return Manifest{}, ctxErr
			}
			return Manifest{}, &ArchiveError{Entry: name, Rule: fmt.Sprintf("write: %v", err), Err: err}
		}
		if n != size {
			return Manifest{}, refuse(name, "holds %d bytes, header says %d", n, size)
		}
		total += n
	}
	if entries == 0 {
		return Manifest{}, refuse("", "the archive is empty: no %s", ManifestName)
	}
	for _, p := range sortedKeys(m.Entrypoints) {
		path := m.Entrypoints[p]
		switch {
		case seen[path] != kindFile:
			return Manifest{}, refuse(path, "entrypoint for %s is not a file in the archive", p)
		case !execs[path]:
			return Manifest{}, refuse(path, "entrypoint for %s is not executable (mode must include 0111)", p)
		}
	}
	return m, nil
}

func writeFile(root *os.Root, name string, perm fs.FileMode, r io.Reader) (int64, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chmod(name, perm) // undo the umask
	}
	return n, err
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeCont:
		return "contiguous file"
	case tar.TypeXGlobalHeader:
		return "PAX global header"
	case tar.TypeGNUSparse:
		return "GNU sparse file"
	default:
		return fmt.Sprintf("type %q", t)
	}
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

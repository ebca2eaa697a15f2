package artifacts

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/runfleet/runfleet/rftype"
)

// File is the content of one archive entry: either Data, or the file at Path
// on disk (read when packing) when Data is nil.
type File struct {
	// Data is the file content. Default: nil, read Path instead.
	Data []byte
	// Path is a file on disk to read when Data is nil. Default: "".
	Path string
	// Executable makes the entry mode 0755 instead of 0644. Entrypoints must
	// be executable. Default: false.
	Executable bool
}

// packEpoch is the fixed modification time of every entry.
var packEpoch = time.Unix(0, 0)

// encoderWindow is the fixed zstd window Pack uses.
const encoderWindow = 8 << 20

// IDLength is the length of a release id: hex SHA-256 (rftype.ReleaseIDLength).
const IDLength = rftype.ReleaseIDLength

// ErrInvalidID is wrapped when a release id is not 64 lowercase hex digits
// (rftype.ErrInvalidReleaseID).
var ErrInvalidID = rftype.ErrInvalidReleaseID

// ValidateID checks that id is a release id: 64 lowercase hex digits
// (rftype.ValidateReleaseID).
func ValidateID(id string) error { return rftype.ValidateReleaseID(id) }

// Digest returns the release id of the artifact read from r: the lowercase
// hex SHA-256 of its bytes.
func Digest(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("digest artifact: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Pack writes a deterministic artifact holding m (as manifest.json) and
// files, keyed by their archive paths, to w, and returns its release id.
// The same manifest and file contents always give the same bytes. Every
// entrypoint of m must be among files and executable.
//
// On error, w may have received part of an artifact; write to a temporary
// file and rename it once Pack succeeds.
func Pack(w io.Writer, m Manifest, files map[string]File) (string, error) {
	mb, err := m.Encode()
	if err != nil {
		return "", fmt.Errorf("pack: %w", err)
	}
	if err := checkPackFiles(m, files); err != nil {
		return "", fmt.Errorf("pack: %w", err)
	}

	h := sha256.New()
	enc, err := zstd.NewWriter(io.MultiWriter(w, h),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true),
		zstd.WithLowerEncoderMem(false),
	)
	if err != nil {
		return "", fmt.Errorf("pack: create zstd encoder: %w", err)
	}
	defer enc.Close()
	tw := tar.NewWriter(enc)

	if err := writeEntry(tw, ManifestName, false, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return "", fmt.Errorf("pack: %w", err)
	}
	for _, name := range sortedKeys(files) {
		if err := packFile(tw, name, files[name]); err != nil {
			return "", fmt.Errorf("pack: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("pack: close tar: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("pack: close zstd: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func checkPackFiles(m Manifest, files map[string]File) error {
	for name, f := range files {
		if err := checkEntryPath(name); err != nil {
			return fmt.Errorf("file path %q %v", name, err)
		}
		if name == ManifestName {
			return fmt.Errorf("file path %q is reserved for the manifest", name)
		}
		for dir := parentDir(name); dir != ""; dir = parentDir(dir) {
			if _, ok := files[dir]; ok {
				return fmt.Errorf("file %q is inside %q, which is a file", name, dir)
			}
		}
		if f.Data == nil && f.Path == "" {
			return fmt.Errorf("file %q has neither Data nor Path", name)
		}
	}
	for _, p := range sortedKeys(m.Entrypoints) {
		path := m.Entrypoints[p]
		f, ok := files[path]
		if !ok {
			return fmt.Errorf("entrypoint %q for %s is not among the files", path, p)
		}
		if !f.Executable {
			return fmt.Errorf("entrypoint %q for %s is not marked Executable", path, p)
		}
	}
	return nil
}

func packFile(tw *tar.Writer, name string, f File) error {
	if f.Data != nil {
		return writeEntry(tw, name, f.Executable, int64(len(f.Data)), bytes.NewReader(f.Data))
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("open %q for %q: %w", f.Path, name, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("stat %q: %w", f.Path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("file %q: %q is not a regular file", name, f.Path)
	}
	return writeEntry(tw, name, f.Executable, st.Size(), fh)
}

func writeEntry(tw *tar.Writer, name string, exec bool, size int64, r io.Reader) error {
	mode := int64(0o644)
	if exec {
		mode = 0o755
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     mode,
		ModTime:  packEpoch,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header of %q: %w", name, err)
	}
	n, err := io.Copy(tw, io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("write %q: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("write %q: read %d bytes, want %d (did the file change while packing?)", name, n, size)
	}
	return nil
}

// parentDir returns the parent of a slash path, or "" at the top.
func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

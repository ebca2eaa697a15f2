// Package atomicfile replaces files so that a reader, or a machine that
// crashes, sees either the old content or all of the new, never part of it:
// the new content goes to a temporary file that is synced and then renamed
// over the old one.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with what fill writes. fill writes to a new temporary
// file named by tempPattern: a path whose last element holds a "*" that a
// random string replaces, as in os.CreateTemp; it must be on path's file
// system (beside path, or in a directory kept for writes in progress). The
// file is then synced, closed, made mode 0644 and renamed over path, whose
// directory is created if needed and synced after. On any error the
// temporary file is removed and path is left as it was.
func Write(path, tempPattern string, fill func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(tempPattern), filepath.Base(tempPattern))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir syncs a directory, so that files created, renamed or removed in it
// stay so after a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

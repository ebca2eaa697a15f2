//go:build !linux

package runnerd

import (
	"os"
	"syscall"
)

// workerProcAttr: outside Linux there is no parent-death signal; workers
// still exit when runnerd's end of their pipe closes.
func workerProcAttr() *syscall.SysProcAttr { return nil }

// killGroup kills the worker process.
func killGroup(p *os.Process) { _ = p.Kill() }

// lockCacheDir only creates dir outside Linux: give each runner process its
// own cache directory.
func lockCacheDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.Open(dir)
}

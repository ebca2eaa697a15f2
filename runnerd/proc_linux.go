package runnerd

import (
	"os"
	"syscall"
)

// workerProcAttr puts a worker in its own process group, so a terminal's
// Ctrl-C reaches only runnerd (which then drains the worker) and the worker
// can be killed with everything it started, and kills it if runnerd dies,
// so no worker outlives its runner.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills a worker's process group: the worker and whatever it
// started. A group already gone is fine.
func killGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}

// lockCacheDir takes an exclusive lock on dir for this process: a cache
// evicts what its own process does not use, so two runner processes must
// not share one. Closing the file releases the lock.
func lockCacheDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dir+"/.runnerd.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, errCacheInUse
	}
	return f, nil
}

package runnerd

import "syscall"

// workerProcAttr puts a worker in its own process group, so a terminal's
// Ctrl-C reaches only runnerd (which then drains the worker), and kills it
// if runnerd dies, so no worker outlives its runner.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

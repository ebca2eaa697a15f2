//go:build !linux

package runnerd

import "syscall"

// workerProcAttr: outside Linux there is no parent-death signal; workers
// still exit when runnerd's end of their pipe closes.
func workerProcAttr() *syscall.SysProcAttr { return nil }

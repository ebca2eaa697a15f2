//go:build unix

package cli

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// forwardedSignals are the signals parallel passes on to its copies.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// termSignal is what parallel sends when its context is canceled.
var termSignal os.Signal = syscall.SIGTERM

// ownProcessGroup starts cmd in a process group of its own, so that a
// terminal's signals reach it only through parallel, exactly once.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalChild sends sig to the copy's whole process group, as a terminal
// would, so that a shell wrapper's children get it too.
func signalChild(cmd *exec.Cmd, sig os.Signal) {
	s, ok := sig.(syscall.Signal)
	if !ok {
		_ = cmd.Process.Signal(sig)
		return
	}
	if err := syscall.Kill(-cmd.Process.Pid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = cmd.Process.Signal(sig)
	}
}

// signalExitCode is 128+n for a process killed by signal n.
func signalExitCode(ps *os.ProcessState) (int, bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return 128 + int(ws.Signal()), true
}

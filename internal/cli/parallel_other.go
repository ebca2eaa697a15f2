//go:build !unix

package cli

import (
	"os"
	"os/exec"
)

// forwardedSignals are the signals parallel passes on to its copies.
var forwardedSignals = []os.Signal{os.Interrupt}

// termSignal is what parallel sends when its context is canceled. Without
// process signals, the copies are killed.
var termSignal os.Signal = os.Kill

func ownProcessGroup(*exec.Cmd) {}

func signalChild(cmd *exec.Cmd, sig os.Signal) { _ = cmd.Process.Signal(sig) }

func signalExitCode(*os.ProcessState) (int, bool) { return 0, false }

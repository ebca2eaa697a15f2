package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

// sortedLines returns the lines of s, sorted.
func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(lines)
	return lines
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParallelPrefixesLines(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "parallel", "-n", "3", "--", "sh", "-c",
		`echo "hi $RUNFLEET_PARALLEL_INDEX"; echo err >&2; printf 'no newline'`)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{"[1] hi 1", "[1] no newline", "[2] hi 2", "[2] no newline", "[3] hi 3", "[3] no newline"},
		sortedLines(r.stdout))
	require.Equal(t, []string{"[1] err", "[2] err", "[3] err"}, sortedLines(r.stderr))

	// Without "--", everything from the command name on is the command's.
	r = runCLI(t, "", "parallel", "-n", "1", "echo", "-n", "x")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[1] x\n", r.stdout)
}

func TestParallelExitCodes(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "parallel", "-n", "3", "--", "sh", "-c", `exit $((RUNFLEET_PARALLEL_INDEX == 2 ? 7 : 0))`)
	require.Equal(t, 7, r.code)
	require.Empty(t, r.stderr, "a copy's exit code is not an error of its own")

	// The first copy to exit non-zero decides: copy 1 exits 4 only once
	// copy 2 has exited 5 and been reaped.
	d := t.TempDir()
	r = runCLI(t, "", "parallel", "-n", "2", "--", "sh", "-c", `
		if [ "$RUNFLEET_PARALLEL_INDEX" = 2 ]; then echo $$ > `+d+`/pid.tmp; mv `+d+`/pid.tmp `+d+`/pid; exit 5; fi
		while [ ! -s `+d+`/pid ]; do sleep 0.01; done
		while kill -0 "$(cat `+d+`/pid)" 2>/dev/null; do sleep 0.01; done
		exit 4`)
	require.Equal(t, 5, r.code)

	r = runCLI(t, "", "parallel", "-n", "2", "--", "sh", "-c", `kill -KILL $$`)
	require.Equal(t, 128+9, r.code)

	r = runCLI(t, "", "parallel", "-n", "2", "--", "/no/such/command")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: start copy 1 of /no/such/command: ")
}

func TestParallelKeepsLinesWhole(t *testing.T) {
	t.Parallel()
	// Each copy writes 200 lines of 5,000 bytes; no line may be torn.
	r := runCLI(t, "", "parallel", "-n", "4", "--", "sh", "-c",
		`line=$(printf "%05000d" 0 | tr 0 "$RUNFLEET_PARALLEL_INDEX"); i=0; while [ $i -lt 200 ]; do echo "$line"; i=$((i+1)); done`)
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 800)
	for _, l := range lines {
		i := l[1:2]
		require.Equal(t, "["+i+"] "+strings.Repeat(i, 5000), l)
	}
}

func TestLinePrefixerCutsOverlongLines(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var b bytes.Buffer
	p := &linePrefixer{mu: &mu, w: &b, prefix: []byte("[1] ")}
	long := bytes.Repeat([]byte("x"), maxLine+10)
	for chunk := range slices.Chunk(long, 4096) {
		_, err := p.Write(chunk)
		require.NoError(t, err)
	}
	_, err := p.Write([]byte("\nend"))
	require.NoError(t, err)
	p.flush()
	require.Equal(t, "[1] "+string(long[:maxLine])+"\n[1] xxxxxxxxxx\n[1] end\n", b.String())
}

// signalApp is an app whose signal subscription the test controls.
func signalApp() (*app, *testenv.Buffer, chan chan<- os.Signal) {
	a, out, _ := testApp("")
	subscribed := make(chan chan<- os.Signal, 1)
	a.notify = func(c chan<- os.Signal, _ ...os.Signal) { subscribed <- c }
	a.stopNotify = func(chan<- os.Signal) {}
	return a, out, subscribed
}

func TestParallelForwardsSignals(t *testing.T) {
	t.Parallel()
	a, out, subscribed := signalApp()
	script := `trap 'echo "got TERM"; exit 7' TERM; echo ready; while :; do sleep 30; done`
	code := make(chan int, 1)
	go func() { code <- a.run(context.Background(), []string{"parallel", "-n", "3", "--", "sh", "-c", script}) }()
	sigs := <-subscribed
	waitFor(t, "3 copies ready", func() bool { return strings.Count(out.String(), "ready") == 3 })

	start := time.Now()
	sigs <- syscall.SIGTERM
	require.Equal(t, 7, <-code)
	require.Less(t, time.Since(start), 10*time.Second, "sleep 30 was interrupted too")
	require.Equal(t, []string{"[1] got TERM", "[1] ready", "[2] got TERM", "[2] ready", "[3] got TERM", "[3] ready"},
		sortedLines(out.String()))
}

func TestParallelContextCancelActsLikeSIGTERM(t *testing.T) {
	t.Parallel()
	a, _, subscribed := signalApp()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- a.run(ctx, []string{"parallel", "-n", "2", "--", "sleep", "30"}) }()
	<-subscribed
	start := time.Now()
	cancel()
	require.Equal(t, 128+int(syscall.SIGTERM), <-code)
	require.Less(t, time.Since(start), 10*time.Second)
}

// TestParallelRealSignal runs runfleet as its own process and sends it a real
// SIGINT, as a terminal's Ctrl-C would.
func TestParallelRealSignal(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	require.NoError(t, err)
	script := `trap 'echo "got INT"; exit 3' INT; echo ready; while :; do sleep 30; done`
	cmd := exec.Command(exe, "parallel", "-n", "2", "--", "sh", "-c", script)
	cmd.Env = append(os.Environ(), runAsCLI+"=1")
	out, errOut := &testenv.Buffer{}, &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor(t, "2 copies ready", func() bool { return strings.Count(out.String(), "ready") == 2 })

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.Equal(t, 3, ee.ExitCode(), errOut.String())
	// Each copy got the forwarded signal.
	require.Equal(t, []string{"[1] got INT", "[1] ready", "[2] got INT", "[2] ready"}, sortedLines(out.String()),
		fmt.Sprintf("stderr: %s", errOut.String()))
}

package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
)

// maxLine is the longest output line parallel buffers; a longer line is cut
// and its parts printed as separate lines.
const maxLine = 1 << 20

func (a *app) parallelCmd() *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "parallel -n N -- CMD [ARGS...]",
		Short: "Run N copies of a command, prefixing their output",
		Long: `Start N copies of a command and wait until all have exited. Each output line
is prefixed with "[i] " (i = 1..N): stdout lines go to stdout, stderr lines to
stderr, whole lines only. Each copy gets RUNFLEET_PARALLEL_INDEX=i in its
environment and /dev/null as stdin.

SIGINT, SIGTERM and SIGHUP are forwarded to every copy (each runs in its own
process group, so a terminal's Ctrl-C reaches it exactly once, through
parallel). The exit code is 0 if every copy exited 0, else the code of the
first copy to exit non-zero (128+signal for a copy killed by a signal).`,
		Example: `  runfleet parallel -n 4 -- ./myrunner --cluster dev
  runfleet parallel -n 2 -- sh -c 'echo "I am copy $RUNFLEET_PARALLEL_INDEX"'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("missing the command to run: runfleet parallel -n N -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("copies") {
				return usageErrorf("missing -n N: how many copies to start")
			}
			if n < 1 || n > 10_000 {
				return usageErrorf("-n must be 1 to 10000, got %d", n)
			}
			return a.parallel(cmd.Context(), n, args)
		},
	}
	cmd.Flags().IntVarP(&n, "copies", "n", 0, "how many copies to start (required)")
	// Everything from the command name on belongs to the command, with or
	// without "--".
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// child is one running copy.
type child struct {
	index  int
	cmd    *exec.Cmd
	out    *linePrefixer
	errOut *linePrefixer
}

type childExit struct {
	index int
	code  int
}

// parallel runs n copies of argv. A signal from a.notify is forwarded to
// every copy still running; canceling ctx forwards SIGTERM once.
func (a *app) parallel(ctx context.Context, n int, argv []string) error {
	sigs := make(chan os.Signal, 16)
	a.notify(sigs, forwardedSignals...)
	defer a.stopNotify(sigs)

	var mu sync.Mutex // one line at a time on stdout and stderr together
	exits := make(chan childExit, n)
	running := map[int]*child{}
	forward := func(sig os.Signal) {
		for _, c := range running {
			signalChild(c.cmd, sig)
		}
	}
	var startErr error
	for i := 1; i <= n; i++ {
		prefix := []byte("[" + strconv.Itoa(i) + "] ")
		c := &child{index: i, cmd: exec.Command(argv[0], argv[1:]...),
			out:    &linePrefixer{mu: &mu, w: a.out, prefix: prefix},
			errOut: &linePrefixer{mu: &mu, w: a.err, prefix: prefix}}
		c.cmd.Env = append(os.Environ(), "RUNFLEET_PARALLEL_INDEX="+strconv.Itoa(i))
		c.cmd.Stdout, c.cmd.Stderr = c.out, c.errOut
		ownProcessGroup(c.cmd)
		if err := c.cmd.Start(); err != nil {
			startErr = fmt.Errorf("start copy %d of %s: %w", i, argv[0], err)
			break
		}
		running[i] = c
		go func() {
			err := c.cmd.Wait()
			c.out.flush()
			c.errOut.flush()
			exits <- childExit{index: c.index, code: exitCode(c.cmd, err)}
		}()
	}
	if startErr != nil {
		forward(termSignal)
	}

	first := 0
	done := ctx.Done()
	for len(running) > 0 {
		select {
		case e := <-exits:
			delete(running, e.index)
			if e.code != 0 && first == 0 {
				first = e.code
			}
		case sig := <-sigs:
			forward(sig)
		case <-done:
			done = nil
			forward(termSignal)
		}
	}
	switch {
	case startErr != nil:
		return startErr
	case first != 0:
		return &exitError{code: first}
	}
	return nil
}

// exitCode is the shell's view of how a copy ended.
func exitCode(cmd *exec.Cmd, err error) int {
	ps := cmd.ProcessState
	if ps == nil {
		return 1
	}
	if code, ok := signalExitCode(ps); ok {
		return code
	}
	if c := ps.ExitCode(); c >= 0 {
		if c == 0 && err != nil { // exited 0 but its output could not be copied
			return 1
		}
		return c
	}
	return 1
}

// linePrefixer writes whole lines, each with prefix, to w. Partial lines wait
// in buf for their end (or flush).
type linePrefixer struct {
	mu     *sync.Mutex // shared by every prefixer writing to the same terminal
	w      io.Writer
	prefix []byte
	buf    []byte // the unfinished line
	out    []byte // scratch for one Write
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	n := len(b)
	p.out = p.out[:0]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(p.buf)+len(b) <= maxLine {
				p.buf = append(p.buf, b...)
				break
			}
			take := maxLine - len(p.buf)
			p.buf = append(p.buf, b[:take]...)
			b = b[take:]
			p.out = p.line(p.out, nil)
			continue
		}
		p.out = p.line(p.out, b[:i+1])
		b = b[i+1:]
	}
	if len(p.out) == 0 {
		return n, nil
	}
	p.mu.Lock()
	_, err := p.w.Write(p.out)
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return n, nil
}

// line appends prefix, the buffered start of the line, rest and a newline.
func (p *linePrefixer) line(out, rest []byte) []byte {
	out = append(out, p.prefix...)
	out = append(out, p.buf...)
	out = append(out, rest...)
	if len(out) == 0 || out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	p.buf = p.buf[:0]
	return out
}

// flush writes an unfinished last line, ended with a newline.
func (p *linePrefixer) flush() {
	if len(p.buf) == 0 {
		return
	}
	out := p.line(nil, nil)
	p.mu.Lock()
	_, _ = p.w.Write(out)
	p.mu.Unlock()
}

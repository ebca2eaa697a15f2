package workflows

import (
	"context"
	"io"
)

// ServeWorker runs the worker side of the worker protocol over in and out,
// as a release binary does over its pipes, for tests of the SDK end to end
// without a process.
func ServeWorker(ctx context.Context, tasks []Task, in io.Reader, out io.Writer) error {
	reg, err := newRegistry(tasks)
	if err != nil {
		return err
	}
	return serveWorker(ctx, reg, in, out)
}

// ServeMode is ServeReleaseModes without the exit.
func ServeMode(mode string, tasks []Task, stdout, stderr io.Writer) int {
	return serveMode(mode, tasks, stdout, stderr)
}

// ExecSpansDropped is how many execution spans c's export queue dropped
// for want of room; 0 when c does not queue them.
func ExecSpansDropped(c *Client) int64 {
	if s := c.tel.ExecSpans(); s != nil {
		return s.Dropped()
	}
	return 0
}

// FlushExecSpans exports the execution spans c has queued and waits for
// the collector's answer.
func FlushExecSpans(ctx context.Context, c *Client) error {
	if s := c.tel.ExecSpans(); s != nil {
		return s.Flush(ctx)
	}
	return nil
}

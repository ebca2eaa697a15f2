//go:build unix

package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

// Blob checks that its input arrived whole: Sum is the SHA-256 of Data.
type Blob struct {
	Data string `json:"data"`
	Sum  string `json:"sum"`
}

func (*Blob) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Blob", "v1.0")
}

func (b *Blob) Execute(ctx context.Context) error {
	h := sha256.Sum256([]byte(b.Data))
	if got := hex.EncodeToString(h[:]); got != b.Sum {
		return fmt.Errorf("input of %d bytes hashes to %s, want %s", len(b.Data), got, b.Sum)
	}
	workflows.SetDisplay(ctx, fmt.Sprintf("verified %d bytes", len(b.Data)))
	return nil
}

// blobInput is the JSON of a Blob with n bytes of data.
func blobInput(n int) string {
	data := strings.Repeat("0123456789abcdefghijklmnopqrstuv", n/32+1)[:n]
	h := sha256.Sum256([]byte(data))
	return `{"data":"` + data + `","sum":"` + hex.EncodeToString(h[:]) + `"}`
}

// Large inputs through the CLI: a 200 MiB file streamed to the payload
// store, a 10 MiB input on stdin; over 256 MiB on stdin is refused with
// nothing submitted. Not parallel: the payload store is in the environment.
func TestJobSubmitLargeInputs(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	t.Setenv("RUNFLEET_PAYLOADS", "file://"+dir)
	t.Setenv("TMPDIR", t.TempDir()) // where stdin is spooled
	f.cluster("dev")
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := c.NewRunner(ctx, "dev", &Blob{})
	require.NoError(t, err)
	args := []string{"job", "submit", "--cluster", "dev", "--name", "big", "--task", "Blob", "--version", "v1.0"}

	path := filepath.Join(t.TempDir(), "in.json")
	require.NoError(t, os.WriteFile(path, []byte(blobInput(200<<20)), 0o600))
	fileJob := strings.TrimSpace(f.ok(append(args, "--input-file", path)...).stdout)

	res := f.runStdin(blobInput(10<<20), append(args, "--input-file", "-")...)
	require.Equal(t, 0, res.code, res.stderr)
	stdinJob := strings.TrimSpace(res.stdout)

	// A named pipe is read once, like stdin.
	fifo := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, _ = w.WriteString(blobInput(3 << 20))
			_ = w.Close()
		}
	}()
	fifoJob := strings.TrimSpace(f.ok(append(args, "--input-file", fifo)...).stdout)

	res = f.runStdin(blobInput(300<<20), append(args, "--input-file", "-")...)
	require.Equal(t, ExitFailure, res.code)
	require.Contains(t, res.stderr, "input from stdin is over the 268435456 byte limit; nothing was submitted")
	require.Equal(t, 3, f.jobCount())

	require.NoError(t, r.RunAll(ctx))
	for id, size := range map[string]int{fileJob: 200 << 20, stdinJob: 10 << 20, fifoJob: 3 << 20} {
		out := f.ok("task", "get", id, "0").stdout
		require.Contains(t, out, "verified "+fmt.Sprint(size)+" bytes", out)
		require.Regexp(t, `State:\s+computed`, out)
		require.Regexp(t, `Input:\s+stored, \d+ bytes, sha256:[0-9a-f]{64}`, out)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "payloads"))
	require.NoError(t, err)
	require.Len(t, entries, 3, "one stored input per job")
	tmp, err := filepath.Glob(filepath.Join(os.TempDir(), "runfleet-input-*"))
	require.NoError(t, err)
	require.Empty(t, tmp, "stdin spools are removed")
}

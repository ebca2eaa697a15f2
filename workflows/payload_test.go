package workflows_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// BigInput checks that its input arrived whole (Sum is the SHA-256 of
// Data) and may pass a large input on to a subtask.
type BigInput struct {
	Data      string `json:"data"`
	Sum       string `json:"sum"`
	ChildSize int    `json:"child_size,omitempty"`
}

// bigInputRuns counts executions that got as far as the task's code.
var bigInputRuns atomic.Int64

func (*BigInput) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("BigInput", "v1.0")
}

func (t *BigInput) Execute(ctx context.Context) error {
	bigInputRuns.Add(1)
	if got := sumOf(t.Data); got != t.Sum {
		return fmt.Errorf("input of %d bytes hashes to %s, want %s", len(t.Data), got, t.Sum)
	}
	workflows.SetDisplay(ctx, fmt.Sprintf("verified %d bytes", len(t.Data)))
	if t.ChildSize > 0 {
		_, err := workflows.SubmitSubtask(ctx, newBigInput(t.ChildSize, 9, 0))
		return err
	}
	return nil
}

func sumOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newBigInput is a BigInput of about n bytes of printable data (JSON
// strings need no escaping).
func newBigInput(n int, seed byte, childSize int) *BigInput {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	// Random within the first 64 KiB, repeated after: cheap under -race.
	b := make([]byte, min(n, 64<<10))
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	s := strings.Repeat(string(b), n/len(b)+1)[:n]
	return &BigInput{Data: s, Sum: sumOf(s), ChildSize: childSize}
}

// payloadClient is a client on b's Redis keeping inputs above the inline
// limit in the store at url ("" for none).
func payloadClient(t *testing.T, b *testBundle, url string, opts ...workflows.ClientOption) *workflows.Client {
	t.Helper()
	opts = append([]workflows.ClientOption{workflows.WithRedisURL(b.redis.URL()), workflows.WithPayloadStore(url),
		workflows.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	c, err := workflows.NewClient(b.ctx, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// storedFiles lists the files under dir, relative to it.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return err
	}))
	return out
}

// runBig runs c's BigInput tasks of b's cluster until idle and returns the
// job's tasks.
func runBig(t *testing.T, ctx context.Context, c *workflows.Client, cluster, job string) []workflows.TaskInfo {
	t.Helper()
	r, err := c.NewRunner(ctx, cluster, &BigInput{})
	require.NoError(t, err)
	require.NoError(t, r.RunAll(ctx, workflows.WithConcurrency(2)))
	tasks, err := c.Jobs().Tasks(ctx, job)
	require.NoError(t, err)
	return tasks
}

// Inputs above the inline limit go to the payload store and reach the task
// whole: a 10 MiB root input submitted with the SDK and a 200 MiB subtask
// input, through MinIO; a small input stays inline.
func TestLargeInputsThroughMinIO(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m := testenv.NewMinIO(t)
	c := payloadClient(t, b, minioCacheURL(t, m, m.Endpoint()))
	_, err := c.NewRunner(ctx, b.cluster, &BigInput{})
	require.NoError(t, err)

	small, err := c.Jobs().Submit(ctx, "small", b.cluster, newBigInput(1000, 1, 0))
	require.NoError(t, err)
	j, err := c.Jobs().Submit(ctx, "large", b.cluster, newBigInput(10<<20, 2, 200<<20))
	require.NoError(t, err)

	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()
	in, err := rdb.HGet(ctx, "rf:{j:"+j.ID+"}:t:0", "in").Result()
	require.NoError(t, err)
	require.Less(t, len(in), 100, "Redis keeps only the reference: %q", in)

	for _, id := range []string{small.ID, j.ID} {
		tasks := runBig(t, ctx, c, b.cluster, id)
		for _, task := range tasks {
			require.Equal(t, workflows.TaskComputed, task.State, "%+v", task)
		}
		if id == small.ID {
			require.Nil(t, tasks[0].InputPayload)
			require.Contains(t, tasks[0].Input, `"data":"`)
			continue
		}
		require.Len(t, tasks, 2)
		require.Equal(t, "verified 10485760 bytes", tasks[0].Display)
		require.Equal(t, "verified 209715200 bytes", tasks[1].Display)
		for _, task := range tasks {
			require.NotNil(t, task.InputPayload, "task %d", task.Seq)
			require.Empty(t, task.Input)
		}
		require.Greater(t, tasks[1].InputPayload.Bytes, int64(200<<20))
	}
}

// The same through a local directory, with a release worker fetching the
// root input and uploading its subtask's itself.
func TestLargeInputsThroughAWorker(t *testing.T) {
	b := setup(t)
	dir := t.TempDir()
	c := payloadClient(t, b, "file://"+dir, workflows.WithInlineInputBytes(4096))
	exec := &hostExec{h: pipeWorker(t, &BigInput{})}
	r, err := c.NewRemoteRunner(b.ctx, b.cluster, []workflows.TaskIdentifier{workflows.IdentifierOf(&BigInput{})}, exec, "rel-big")
	require.NoError(t, err)
	j, err := c.Jobs().Submit(b.ctx, t.Name(), b.cluster, newBigInput(3<<20, 3, 5000))
	require.NoError(t, err)
	require.NoError(t, r.RunAll(b.ctx))
	tasks, err := c.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, tasks, 2)
	for _, task := range tasks {
		require.Equal(t, workflows.TaskComputed, task.State, "%+v", task)
		require.NotNil(t, task.InputPayload)
	}
	require.Equal(t, "verified 5000 bytes", tasks[1].Display)
	files := storedFiles(t, dir)
	require.Len(t, files, 2)
	for _, f := range files {
		require.True(t, strings.HasPrefix(f, "payloads/"+j.ID+"/"), f)
	}
}

// A stored input that is missing or does not match its digest fails the
// task with an error that says so; the task never runs.
func TestStoredInputMissingOrCorrupted(t *testing.T) {
	b := setup(t)
	dir := t.TempDir()
	c := payloadClient(t, b, "file://"+dir)
	_, err := c.Clusters().Create(b.ctx, "other", "")
	require.NoError(t, err)
	for _, cluster := range []string{b.cluster, "other"} {
		_, err := c.NewRunner(b.ctx, cluster, &BigInput{})
		require.NoError(t, err)
	}
	submit := func(seed byte, cluster string) (workflows.Job, string) {
		j, err := c.Jobs().Submit(b.ctx, t.Name(), cluster, newBigInput(100<<10, seed, 0))
		require.NoError(t, err)
		files := storedFiles(t, filepath.Join(dir, "payloads", j.ID))
		require.Len(t, files, 1)
		return j, filepath.Join(dir, "payloads", j.ID, files[0])
	}
	missing, path := submit(1, b.cluster)
	require.NoError(t, os.Remove(path))
	corrupt, path := submit(2, b.cluster)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[1000] ^= 1 // one bit
	require.NoError(t, os.WriteFile(path, data, 0o600))
	truncated, path := submit(3, b.cluster)
	require.NoError(t, os.Truncate(path, 50<<10))
	// A runner without a payload store cannot fetch it either.
	noStore, _ := submit(4, "other")

	before := bigInputRuns.Load()
	for _, tc := range []struct {
		job     workflows.Job
		client  *workflows.Client
		cluster string
		want    []string
	}{
		{noStore, payloadClient(t, b, ""), "other", []string{"this runner has no payload store", "RUNFLEET_PAYLOADS"}},
		{missing, c, b.cluster, []string{"task input payload missing", "is not in the payload store"}},
		{corrupt, c, b.cluster, []string{"task input payload corrupted", "has 102484 bytes hashing to sha256:"}},
		{truncated, c, b.cluster, []string{"task input payload corrupted", "has 51200 bytes"}},
	} {
		tasks := runBig(t, b.ctx, tc.client, tc.cluster, tc.job.ID)
		require.Equal(t, workflows.TaskFailed, tasks[0].State, "%+v", tasks[0])
		for _, w := range tc.want {
			require.Contains(t, tasks[0].Error, w)
		}
		require.Contains(t, tasks[0].Error, "the task was not run")
		require.NotContains(t, tasks[0].Error, "hashing to sha256:"+tasks[0].InputPayload.SHA256, "the digest found differs")
	}
	require.Equal(t, before, bigInputRuns.Load(), "no task ran on a wrong input")
}

// Over the hard limit is refused before anything is written, from a value
// and from a file; above the inline limit without a payload store too.
func TestLargeInputRefused(t *testing.T) {
	b := setup(t)
	dir := t.TempDir()
	c := payloadClient(t, b, "file://"+dir)
	_, err := c.NewRunner(b.ctx, b.cluster, &BigInput{})
	require.NoError(t, err)

	_, err = c.Jobs().Submit(b.ctx, t.Name(), b.cluster, newBigInput(300<<20, 1, 0))
	require.ErrorIs(t, err, workflows.ErrInputTooLarge)
	require.ErrorContains(t, err, "over the 268435456 byte limit")

	path := filepath.Join(t.TempDir(), "huge.json")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(300<<20)) // sparse: refused by its size, never read
	require.NoError(t, f.Close())
	_, err = c.Jobs().SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "file", Cluster: b.cluster,
		Task: workflows.IdentifierOf(&BigInput{}), InputFile: path})
	require.ErrorIs(t, err, workflows.ErrInputTooLarge)
	require.ErrorContains(t, err, "huge.json is 314572800 bytes, over the 268435456 byte limit")

	_, err = payloadClient(t, b, "").Jobs().Submit(b.ctx, t.Name(), b.cluster, newBigInput(100<<10, 1, 0))
	require.ErrorIs(t, err, workflows.ErrInputTooLarge)
	require.ErrorContains(t, err, "over the 65536 byte inline limit")
	require.ErrorContains(t, err, "RUNFLEET_PAYLOADS")

	// An input file that is not one JSON object.
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"data":"`+strings.Repeat("x", 100<<10)+`"} {}`), 0o600))
	_, err = c.Jobs().SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "file", Cluster: b.cluster,
		Task: workflows.IdentifierOf(&BigInput{}), InputFile: bad})
	require.ErrorIs(t, err, workflows.ErrInvalidInput)
	require.ErrorContains(t, err, "data after the JSON object")

	list, err := c.Jobs().List(b.ctx, workflows.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list)
	require.Empty(t, storedFiles(t, dir), "nothing uploaded")
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(b.ctx, "rf:{j:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// A job's stored inputs are deleted when it is archived; an upload whose
// submitter died before the job existed is deleted by the archive sweep
// once its deadline passed, and one whose job exists is kept with it.
func TestStoredInputsDeletedWithJob(t *testing.T) {
	b := setup(t)
	dir := t.TempDir()
	c := payloadClient(t, b, "file://"+dir)
	_, err := c.NewRunner(b.ctx, b.cluster, &BigInput{})
	require.NoError(t, err)
	j, err := c.Jobs().Submit(b.ctx, t.Name(), b.cluster, newBigInput(100<<10, 1, 100<<10))
	require.NoError(t, err)
	tasks := runBig(t, b.ctx, c, b.cluster, j.ID)
	require.Len(t, tasks, 2)
	require.Len(t, storedFiles(t, dir), 2)

	// A submitter that died after its upload, and one that died after
	// creating its job (which is still running).
	q := c.Queue()
	url := "file://" + dir
	orphan := "0196a3c4-0000-7000-8000-00000000dead"
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "payloads", orphan), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "payloads", orphan, strings.Repeat("ab", 32)), []byte("{}"), 0o600))
	require.NoError(t, q.PayloadUploadPending(b.ctx, orphan, url, time.Now().Add(-time.Second)))
	live, err := c.Jobs().Submit(b.ctx, "live", b.cluster, newBigInput(100<<10, 2, 0))
	require.NoError(t, err)
	require.NoError(t, q.PayloadUploadPending(b.ctx, live.ID, url, time.Now().Add(-time.Second)))
	young := "0196a3c4-0000-7000-8000-00000000beef"
	require.NoError(t, q.PayloadUploadPending(b.ctx, young, url, time.Now().Add(time.Hour)))

	archive, archiveURL := fileArchive(t)
	n, err := c.ArchiveJobs(b.ctx, archive, archiveURL, time.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	left := storedFiles(t, dir)
	require.Len(t, left, 1, "only the live job's input is left: %v", left)
	require.True(t, strings.HasPrefix(left[0], "payloads/"+live.ID+"/"))

	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()
	pending, err := rdb.ZRange(b.ctx, "rf:payloadpending", 0, -1).Result()
	require.NoError(t, err)
	require.Equal(t, []string{young + " " + url}, pending, "settled past their deadline; the young one waits")
	urls, err := rdb.SMembers(b.ctx, "rf:{j:"+live.ID+"}:cacheurls").Result()
	require.NoError(t, err)
	require.Equal(t, []string{url}, urls)

	// The live job's input goes when it is archived in turn.
	runBig(t, b.ctx, c, b.cluster, live.ID)
	_, err = c.ArchiveJobs(b.ctx, archive, archiveURL, time.Now())
	require.NoError(t, err)
	require.Empty(t, storedFiles(t, dir))
}

// The task record names a stored input by digest and size, in JSON too.
func TestStoredInputInTaskRecord(t *testing.T) {
	b := setup(t)
	c := payloadClient(t, b, "file://"+t.TempDir())
	_, err := c.NewRunner(b.ctx, b.cluster, &BigInput{})
	require.NoError(t, err)
	in := newBigInput(100<<10, 5, 0)
	j, err := c.Jobs().Submit(b.ctx, t.Name(), b.cluster, in)
	require.NoError(t, err)
	task, err := c.Jobs().Task(b.ctx, j.ID, 0)
	require.NoError(t, err)
	raw, err := json.Marshal(in)
	require.NoError(t, err)
	require.Equal(t, &queue.PayloadRef{SHA256: sumOf(string(raw)), Bytes: int64(len(raw))}, task.InputPayload)
	out, err := json.Marshal(task)
	require.NoError(t, err)
	require.Contains(t, string(out), `"input":"","input_payload":{"sha256":"`+sumOf(string(raw))+`","bytes":`)
}

// SlowBig holds its stored input while it runs, and records how many run
// at once.
type SlowBig struct {
	Data string `json:"data"`
}

var slowBigNow, slowBigMost atomic.Int64

func (*SlowBig) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("SlowBig", "v1.0")
}

func (s *SlowBig) Execute(ctx context.Context) error {
	n := slowBigNow.Add(1)
	defer slowBigNow.Add(-1)
	for {
		most := slowBigMost.Load()
		if n <= most || slowBigMost.CompareAndSwap(most, n) {
			break
		}
	}
	time.Sleep(150 * time.Millisecond)
	return nil
}

// WithStoredInputMemory bounds the stored inputs a runner's executions
// hold: four 100 KiB inputs under a 150 KiB bound run one at a time, under
// the default bound side by side; inline inputs are not counted. Not
// parallel: the counters are shared.
func TestStoredInputMemoryBound(t *testing.T) {
	b := setup(t)
	c := payloadClient(t, b, "file://"+t.TempDir())
	r, err := c.NewRunner(b.ctx, b.cluster, &SlowBig{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		size  int
		bound int64
		most  int64 // exactly 1, or at least 2: side by side
	}{
		{"stored, bounded", 100 << 10, 150 << 10, 1},
		{"stored, default bound", 100 << 10, 0, 2},
		{"inline, bounded", 1000, 150 << 10, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slowBigMost.Store(0)
			for i := range 4 {
				_, err := c.Jobs().Submit(b.ctx, tc.name, b.cluster, &SlowBig{Data: strings.Repeat(string(rune('a'+i)), tc.size)})
				require.NoError(t, err)
			}
			require.NoError(t, r.RunAll(b.ctx, workflows.WithConcurrency(4), workflows.WithStoredInputMemory(tc.bound)))
			if tc.most == 1 {
				require.Equal(t, int64(1), slowBigMost.Load(), "one at a time")
			} else {
				require.GreaterOrEqual(t, slowBigMost.Load(), tc.most, "side by side")
			}
		})
	}
}

package workflows

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/internal/jsonscan"
	"github.com/runfleet/runfleet/protocol"
	"github.com/runfleet/runfleet/queue"
	"golang.org/x/sync/semaphore"
)

// Large task inputs. An input up to the inline limit lives in Redis with
// its task; a larger one is uploaded to the payload store (an object store)
// under payloads/<job>/<sha256>, and the task keeps only its reference. The
// runner that claims the task fetches the input and checks its digest and
// size before the task sees it, so a task never runs on a missing or
// corrupted input. A job's payloads are deleted with its cache when the job
// is archived (the store's URL is recorded with the job).

const (
	// DefaultInlineInputBytes is the largest input kept in Redis with its
	// task unless WithInlineInputBytes says otherwise.
	DefaultInlineInputBytes = 64 << 10
	// MaxInlineInputBytes bounds WithInlineInputBytes: larger inline inputs
	// would crowd out the tasks in Redis.
	MaxInlineInputBytes = 1 << 20
	// MaxInputBytes is the hard limit on one task input, inline or stored.
	MaxInputBytes = 256 << 20
)

// Errors of stored inputs; test with errors.Is.
var (
	// ErrInputPayloadMissing: the task's stored input is not in the payload
	// store (deleted, or the runner uses another store than the submitter).
	ErrInputPayloadMissing = errors.New("task input payload missing")
	// ErrInputPayloadCorrupt: the stored input's content does not match
	// the digest and size its task was submitted with.
	ErrInputPayloadCorrupt = errors.New("task input payload corrupted")
)

// payloadPendingFor is how long a submitter may take between its first
// upload for a new job and recording the store with the created job; after
// that the archive sweep settles the upload (payload.go in queue).
const payloadPendingFor = time.Hour

// payloadRetryAfter is how long the sweep leaves an upload it failed to
// settle before it tries again.
const payloadRetryAfter = 10 * time.Minute

// oldWorkerInputField is the only field of the input sent to a release
// worker in place of a stored input: a worker built before stored inputs
// decodes strictly and so fails the task on it instead of running the task
// on a zero input.
const oldWorkerInputField = "$runfleet_input_payload"

// payloadStore is where a client keeps large inputs: an object store whose
// use per job is recorded as an object-store job cache's is (storeCache:
// its q is nil in release workers, whose runner records the use before it
// dispatches), under payloads/ instead of cache/.
type payloadStore struct{ storeCache }

func payloadObject(job, digest string) string { return "payloads/" + job + "/" + digest }

// payloadJobPrefix is where all of a job's stored inputs live.
func payloadJobPrefix(job string) string { return "payloads/" + job + "/" }

// openPayloadStore opens the store named by url: "" is none, unless the job
// cache is an object store, which then holds payloads too.
func (c *Client) openPayloadStore(url string) (*payloadStore, error) {
	if url == "" {
		sc, ok := c.cache.(storeCache)
		if !ok {
			return nil, nil
		}
		return &payloadStore{sc}, nil
	}
	store, err := artifacts.OpenStore(url)
	if err != nil {
		return nil, fmt.Errorf("payload store: %w", err)
	}
	return &payloadStore{storeCache{store: store, url: url, q: c.q, memo: &useMemo{}}}, nil
}

// PayloadStoreURL is where the client keeps inputs above its inline limit
// (WithPayloadStore), or "" when it has no payload store.
func (c *Client) PayloadStoreURL() string {
	if c.inputs.store == nil {
		return ""
	}
	return c.inputs.store.url
}

// refOf is the reference of content b.
func refOf(b []byte) queue.PayloadRef {
	sum := sha256.Sum256(b)
	return queue.PayloadRef{SHA256: hex.EncodeToString(sum[:]), Bytes: int64(len(b))}
}

// put uploads content b for job unless an object with its digest is there
// already (content addressing makes a repeat a no-op).
func (p *payloadStore) put(ctx context.Context, job string, b []byte) (queue.PayloadRef, error) {
	ref := refOf(b)
	key := payloadObject(job, ref.SHA256)
	if ok, err := p.store.Exists(ctx, key); err == nil && ok {
		return ref, nil
	}
	if err := p.store.Put(ctx, key, bytes.NewReader(b)); err != nil {
		return ref, fmt.Errorf("store input in the payload store: %w", err)
	}
	return ref, nil
}

// putFile uploads the file at path, expected to hold ref's content; it
// hashes what it uploads and deletes the object if the file changed since
// ref was computed.
func (p *payloadStore) putFile(ctx context.Context, job, path string, ref queue.PayloadRef) error {
	key := payloadObject(job, ref.SHA256)
	if ok, err := p.store.Exists(ctx, key); err == nil && ok {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read input file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(f, h)}
	if err := p.store.Put(ctx, key, cr); err != nil {
		return fmt.Errorf("store input in the payload store: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != ref.SHA256 || cr.n != ref.Bytes {
		_ = p.store.Delete(ctx, key)
		return fmt.Errorf("input file %s changed while it was uploaded (%d bytes, sha256:%s; it had %d bytes, sha256:%s): nothing was submitted",
			path, cr.n, got, ref.Bytes, ref.SHA256)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// fetch reads job's stored input ref and checks it against the reference.
// A store that cannot be read is a *runnerError (hand the task back); a
// missing or mismatching object is the task's failure.
func (p *payloadStore) fetch(ctx context.Context, job string, ref queue.PayloadRef) ([]byte, error) {
	rc, err := p.store.Get(ctx, payloadObject(job, ref.SHA256))
	if errors.Is(err, artifacts.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s is not in the payload store %s (deleted, or this runner uses another store than the submitter); the task was not run",
			ErrInputPayloadMissing, describeRef(ref), redactURL(p.url))
	}
	if err != nil {
		// The store, not the task: the runner hands the task back.
		return nil, &runnerError{fmt.Errorf("fetch task input %s: %w", describeRef(ref), err)}
	}
	defer rc.Close()
	h := sha256.New()
	var buf bytes.Buffer
	if ref.Bytes <= MaxInputBytes {
		buf.Grow(int(ref.Bytes))
	}
	// One byte more than expected tells a longer object from a right one.
	n, err := io.Copy(io.MultiWriter(&buf, h), io.LimitReader(rc, ref.Bytes+1))
	if err != nil {
		return nil, &runnerError{fmt.Errorf("fetch task input %s: %w", describeRef(ref), err)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != ref.Bytes || got != ref.SHA256 {
		size := fmt.Sprintf("%d bytes", n)
		if n > ref.Bytes {
			size = fmt.Sprintf("more than %d bytes", ref.Bytes)
		}
		return nil, fmt.Errorf("%w: %s in the payload store has %s hashing to sha256:%s; the task was not run",
			ErrInputPayloadCorrupt, describeRef(ref), size, got)
	}
	return buf.Bytes(), nil
}

func describeRef(ref queue.PayloadRef) string {
	return fmt.Sprintf("stored input sha256:%s (%d bytes)", ref.SHA256, ref.Bytes)
}

// inputPolicy bounds task inputs and keeps those above the inline limit
// in the payload store: a client's for submissions and its runners, an
// execution's for its subtasks.
type inputPolicy struct {
	max, inline int
	store       *payloadStore // nil: no payload store
}

// tooLarge is the error for an input the policy cannot keep.
func (p inputPolicy) tooLarge(what string, n int) error {
	if n > p.max {
		return markErr(ErrInputTooLarge, "%s: input is %d bytes, over the %d byte limit", what, n, p.max)
	}
	return markErr(ErrInputTooLarge, "%s: input is %d bytes, over the %d byte inline limit, and there is no payload store for larger inputs: set RUNFLEET_PAYLOADS (or WithPayloadStore, or an object-store RUNFLEET_CACHE) to an s3:// or file:// URL",
		what, n, p.inline)
}

// check refuses an input above the hard limit, or above the inline limit
// without a payload store.
func (p inputPolicy) check(what string, n int) error {
	if n > p.max || (n > p.inline && p.store == nil) {
		return p.tooLarge(what, n)
	}
	return nil
}

// keepForJob keeps an input of a task of a job in Redis: as it is up to
// the inline limit, else uploaded (the job's use of the store recorded
// first) and replaced by its reference.
func (p inputPolicy) keepForJob(ctx context.Context, job, what string, input []byte) ([]byte, error) {
	if err := p.check(what, len(input)); err != nil || len(input) <= p.inline {
		return input, err
	}
	if err := p.store.recordUse(ctx, job); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ref, err := p.store.put(ctx, job, input)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return []byte(ref.String()), nil
}

// resolve is a claimed task's input as JSON: fetched and checked when it
// is stored.
func (p inputPolicy) resolve(ctx context.Context, job string, input []byte) ([]byte, error) {
	ref, stored, err := queue.ParsePayloadRef(input)
	if err != nil || !stored {
		return input, err
	}
	if p.store == nil {
		return nil, fmt.Errorf("%w: the task's input is a %s, and this runner has no payload store: set RUNFLEET_PAYLOADS (or WithPayloadStore) to the submitter's store; the task was not run",
			ErrInputPayloadMissing, describeRef(ref))
	}
	return p.store.fetch(ctx, job, ref)
}

// DefaultStoredInputMemory is how many bytes of stored inputs a runner's
// executions hold at once unless WithStoredInputMemory says otherwise.
const DefaultStoredInputMemory = 1 << 30

// WithStoredInputMemory bounds the bytes of stored inputs (those above the
// inline limit) the runner's executions hold at once, from the fetch until
// the task returns: a task whose input does not fit waits for others to
// finish, so a runner at concurrency 1024 does not hold 1024 inputs of
// 256 MiB. One input larger than the bound runs alone. Default
// DefaultStoredInputMemory (1 GiB); negative: no bound. Release workers
// count too: the runner holds the bytes while its worker runs the task.
func WithStoredInputMemory(n int64) RunOption { return func(c *runConfig) { c.storedInputs = n } }

// inputBudget is a run's bound on the stored inputs its executions hold.
type inputBudget struct {
	sem  *semaphore.Weighted
	size int64
}

// startInputBudget sets up the run's bound (WithStoredInputMemory).
func (r *Runner) startInputBudget(cfg runConfig) {
	n := cfg.storedInputs
	if n == 0 {
		n = DefaultStoredInputMemory
	}
	if n < 0 {
		r.inputBudget.Store(nil)
		return
	}
	r.inputBudget.Store(&inputBudget{sem: semaphore.NewWeighted(n), size: n})
}

// holdStoredInput waits until the run's bound has room for the stored
// input named by input (nothing for an inline input) and returns what
// gives the room back. An error is ctx's: the runner is stopping.
func (r *Runner) holdStoredInput(ctx context.Context, input []byte) (release func(), err error) {
	b := r.inputBudget.Load()
	ref, stored, _ := queue.ParsePayloadRef(input)
	if b == nil || !stored {
		return func() {}, nil
	}
	n := min(max(ref.Bytes, 1), b.size) // a bigger one runs alone
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { b.sem.Release(n) }, nil
}

// inputFile is an input file scanned before it is submitted.
type inputFile struct {
	path string
	ref  queue.PayloadRef
	// small is the file's content when it is within the inline limit,
	// kept from the scan: the file is not read again for it.
	small []byte
}

// scanInputFile checks that the regular file at path is one JSON object
// within limit bytes and computes its reference, reading it as a stream;
// its content is kept only up to inline bytes. A pipe is refused: it
// cannot be read twice (hashed here, uploaded later).
func scanInputFile(path string, limit, inline int) (inputFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return inputFile{}, fmt.Errorf("read input file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return inputFile{}, fmt.Errorf("read input file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return inputFile{}, markErr(ErrInvalidInput, "input file %s is not a regular file (a pipe or device cannot be read twice); copy it to a file first", path)
	}
	if fi.Size() > int64(limit) {
		return inputFile{}, markErr(ErrInputTooLarge, "input file %s is %d bytes, over the %d byte limit", path, fi.Size(), limit)
	}
	h := sha256.New()
	keep := &prefixBuffer{max: inline}
	cr := &countingReader{r: io.TeeReader(io.LimitReader(f, int64(limit)+1), io.MultiWriter(h, keep))}
	err = jsonscan.CheckObject(cr)
	if cr.n > int64(limit) {
		return inputFile{}, markErr(ErrInputTooLarge, "input file %s grew over the %d byte limit while it was read", path, limit)
	}
	if err != nil {
		return inputFile{}, markErr(ErrInvalidInput, "input file %s must hold one JSON object: %v", path, err)
	}
	in := inputFile{path: path, ref: queue.PayloadRef{SHA256: hex.EncodeToString(h.Sum(nil)), Bytes: cr.n}}
	if !keep.over {
		in.small = keep.b
	}
	return in, nil
}

// prefixBuffer keeps what is written up to max bytes, and notes more.
type prefixBuffer struct {
	b    []byte
	max  int
	over bool
}

func (p *prefixBuffer) Write(b []byte) (int, error) {
	if !p.over && len(p.b)+len(b) <= p.max {
		p.b = append(p.b, b...)
	} else {
		p.over, p.b = true, nil
	}
	return len(b), nil
}

// workerPayloadStore opens the store a runner named in Execute.Payloads,
// sharing the worker's stores with its job caches (workerStore): by
// default both are the same URL.
func workerPayloadStore(url string) (*payloadStore, error) {
	if url == "" {
		return nil, nil
	}
	s, err := workerStore(url)
	if err != nil {
		return nil, fmt.Errorf("payload store: %w", err)
	}
	return &payloadStore{storeCache{store: s, url: url}}, nil
}

// workerInputs is a release worker's input policy for one execution, from
// its runner's Execute, and the execution's input, fetched and checked
// when it is stored.
func workerInputs(ctx context.Context, x protocol.Execute) (inputPolicy, []byte, error) {
	p := inputPolicy{max: MaxInputBytes, inline: DefaultInlineInputBytes}
	if x.MaxInput > 0 {
		p.max = min(x.MaxInput, MaxInputBytes)
	}
	if x.InlineInput > 0 {
		p.inline = min(x.InlineInput, MaxInlineInputBytes, p.max)
	}
	var err error
	if p.store, err = workerPayloadStore(x.Payloads); err != nil {
		return p, nil, err
	}
	if x.InputPayload == nil {
		return p, x.Input, nil
	}
	ref := queue.PayloadRef{SHA256: x.InputPayload.SHA256, Bytes: x.InputPayload.Bytes}
	if p.store == nil {
		return p, nil, fmt.Errorf("%w: the runner sent a %s without a payload store to fetch it from", ErrInputPayloadMissing, describeRef(ref))
	}
	input, err := p.store.fetch(ctx, x.JobID, ref)
	return p, input, err
}

// wirePayloadRef turns a stored reference into its protocol form.
func wirePayloadRef(ref queue.PayloadRef) *protocol.PayloadRef {
	return &protocol.PayloadRef{SHA256: ref.SHA256, Bytes: ref.Bytes}
}

// oldWorkerInput is the Input sent with a stored input (oldWorkerInputField).
func oldWorkerInput(ref queue.PayloadRef) json.RawMessage {
	b, _ := json.Marshal(map[string]string{oldWorkerInputField: describeRef(ref) +
		"; this worker's runfleet SDK is too old to fetch stored inputs: rebuild the release"})
	return b
}

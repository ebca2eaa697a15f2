package workflows

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runfleet/runfleet/queue"
)

// Job is a submitted job: its state, task counts per state and progress.
type Job = queue.Job

// TaskInfo is one task of a job as listed by JobClient.Tasks.
type TaskInfo = queue.Task

// LeafGroup counts computed tasks of one parent and name that a graph read
// counted instead of listing (queue.GraphSummary).
type LeafGroup = queue.LeafGroup

// ProgressInfo is one progress counter of a job.
type ProgressInfo = queue.Progress

// Job states.
const (
	JobSubmitted = queue.JobSubmitted
	JobRunning   = queue.JobRunning
	JobCompleted = queue.JobCompleted
	JobFailed    = queue.JobFailed
	JobCanceled  = queue.JobCanceled
)

// Task states.
const (
	TaskQueued         = queue.TaskQueued
	TaskRunning        = queue.TaskRunning
	TaskComputed       = queue.TaskComputed
	TaskFailed         = queue.TaskFailed
	TaskSkipped        = queue.TaskSkipped
	TaskFailedOptional = queue.TaskFailedOptional
)

// TaskStates lists every task state; JobStates every job state.
var (
	TaskStates = queue.TaskStates
	JobStates  = queue.JobStates
)

// JobClient submits and manages jobs.
type JobClient struct{ c *Client }

// JobOption configures a submission.
type JobOption func(*jobConfig)

type jobConfig struct{ maxRetries int }

// WithJobMaxRetries sets how often the root task is retried after it fails.
// Default 0.
func WithJobMaxRetries(n int) JobOption { return func(c *jobConfig) { c.maxRetries = n } }

// Submit submits a job named name to cluster with task as its root.
func (jc *JobClient) Submit(ctx context.Context, name, cluster string, task Task, opts ...JobOption) (Job, error) {
	if v := reflect.ValueOf(task); v.Kind() == reflect.Pointer && v.IsNil() {
		// Encodes to null; refused before IdentifierOf, which may call a
		// value method through the nil pointer.
		return Job{}, inputObjectErr(name, []byte("null"))
	}
	id, input, err := encodeInput(task)
	if err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", name, err)
	}
	if input[0] != '{' { // json.Marshal output has no leading space
		return Job{}, inputObjectErr(name, input)
	}
	if err := jc.c.inputs.check(fmt.Sprintf("submit job %q", name), len(input)); err != nil {
		return Job{}, err
	}
	var cfg jobConfig
	for _, o := range opts {
		o(&cfg)
	}
	j, _, err := jc.submit(ctx, submission{name: name, cluster: cluster, id: id, input: input, maxRetries: cfg.maxRetries})
	return j, err
}

// SubmitRequest is a submission by task name, for callers without the task's
// Go type (the CLI, HTTP submissions).
type SubmitRequest struct {
	Name    string          // job name, required
	Cluster string          // cluster slug, required
	Task    TaskIdentifier  // root task identifier, required
	Input   json.RawMessage // root task input, a JSON object (default {})
	// InputFile, instead of Input, names a file holding the root task's
	// input: read as a stream, so an input up to MaxInputBytes is never
	// held in memory whole on its way to the payload store.
	InputFile  string
	MaxRetries int // retries of the root task (default 0)
	// Notify is a URL that receives a signed JSON POST of the job's final
	// state when it finishes (default none).
	Notify string
	// IdempotencyKey, when set, makes the submission happen once: the same
	// key within IdempotencyTTL returns the job the first submission
	// created, also when that submitter died before it finished.
	IdempotencyKey string
	// IdempotencyTTL is how long the key is remembered (default 24 h).
	IdempotencyTTL time.Duration
	// Fingerprint identifies the request for IdempotencyKey: a repeat of
	// the key with another fingerprint is ErrIdempotencyConflict. Default:
	// a hash of every field. Event sources whose repeats differ in details
	// that do not matter (a redelivered event's time) set their own.
	Fingerprint string
}

// Errors of submissions, for callers that map them (the HTTP API); test
// with errors.Is.
var (
	// ErrUnknownTask: no runner of the cluster registered (and the cluster
	// did not declare) a task identifier that can run the submitted one.
	ErrUnknownTask = errors.New("unknown task")
	// ErrInvalidInput: the input is not a JSON object.
	ErrInvalidInput = errors.New("invalid input")
	// ErrInputTooLarge: the input is over the client's limit.
	ErrInputTooLarge = errors.New("input too large")
)

// markedError is an error with its own message that also matches a
// sentinel with errors.Is.
type markedError struct {
	sentinel error
	msg      string
}

func (e *markedError) Error() string        { return e.msg }
func (e *markedError) Is(target error) bool { return target == e.sentinel }

func markErr(sentinel error, format string, args ...any) error {
	return &markedError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// DefaultIdempotencyTTL is how long an idempotency key is remembered.
const DefaultIdempotencyTTL = 24 * time.Hour

// ErrIdempotencyConflict is returned when an idempotency key was used before
// with a different request.
var ErrIdempotencyConflict = queue.ErrIdempotencyConflict

// SubmitRaw submits a job whose root task is given by identifier and JSON input.
func (jc *JobClient) SubmitRaw(ctx context.Context, r SubmitRequest) (Job, error) {
	j, _, err := jc.SubmitOnce(ctx, r)
	return j, err
}

// SubmitOnce is SubmitRaw that also reports whether this call created the
// job (false when r.IdempotencyKey named an earlier submission).
func (jc *JobClient) SubmitOnce(ctx context.Context, r SubmitRequest) (Job, bool, error) {
	s, err := jc.checkRaw(r)
	if err != nil {
		return Job{}, false, err
	}
	return jc.submit(ctx, s)
}

func (jc *JobClient) checkRaw(r SubmitRequest) (submission, error) {
	s := submission{name: r.Name, cluster: r.Cluster, maxRetries: r.MaxRetries, notify: r.Notify,
		idemKey: r.IdempotencyKey, idemTTL: r.IdempotencyTTL, fp: r.Fingerprint}
	var err error
	if s.id, err = r.Task.Parse(); err != nil {
		return s, fmt.Errorf("submit job %q: %w", r.Name, err)
	}
	what := fmt.Sprintf("submit job %q", r.Name)
	if r.InputFile != "" {
		if len(r.Input) > 0 {
			return s, markErr(ErrInvalidInput, "%s: both Input and InputFile are set; give one", what)
		}
		f, err := scanInputFile(r.InputFile, jc.c.inputs.max, jc.c.inputs.inline)
		if err != nil {
			return s, fmt.Errorf("%s: %w", what, err)
		}
		if err := jc.c.inputs.check(what, int(f.ref.Bytes)); err != nil {
			return s, err
		}
		if f.small != nil {
			r.Input = f.small
		} else {
			s.file = &f
		}
	}
	if s.file == nil {
		s.input = bytes.TrimSpace(r.Input)
		if len(s.input) == 0 {
			s.input = []byte("{}")
		}
		if err := jc.c.inputs.check(what, len(s.input)); err != nil {
			return s, err
		}
		if err := inputObjectErr(r.Name, s.input); err != nil {
			return s, err
		}
	}
	if err := CheckNotifyURL(r.Notify); err != nil {
		return s, fmt.Errorf("%s: %w", what, err)
	}
	return s, nil
}

// inputObjectErr is ErrInvalidInput unless input is a JSON object: the one
// error Submit and SubmitRaw give for a root input that is not.
func inputObjectErr(name string, input []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(input, &obj); err != nil || obj == nil {
		return markErr(ErrInvalidInput, "submit job %q: input must be a JSON object: %s", name, jsonErr(err))
	}
	return nil
}

// CheckNotifyURL accepts "" (no notification) or an absolute http(s) URL,
// as SubmitRequest.Notify must be.
func CheckNotifyURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := neturl.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("notify URL %q is not an absolute http:// or https:// URL", raw)
	}
	return nil
}

// submission is one job to write.
type submission struct {
	name, cluster   string
	id              queue.Identifier
	input           []byte
	file            *inputFile // an input above the inline limit read from a file, instead of input
	maxRetries      int
	notify, idemKey string
	idemTTL         time.Duration
	fp              string // overrides fingerprint()
}

// fingerprint identifies the request an idempotency key was used for.
func (s submission) fingerprint() string {
	if s.fp != "" {
		return s.fp
	}
	h := sha256.New()
	input := s.input
	if s.file != nil {
		// Not read again: its digest stands for it.
		input = []byte(s.file.ref.String())
	}
	for _, part := range [][]byte{[]byte(s.name), []byte(s.cluster), []byte(s.id.Name), []byte(s.id.Version()), input,
		[]byte(strconv.Itoa(s.maxRetries)), []byte(s.notify)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func jsonErr(err error) string {
	if err == nil {
		return "got null"
	}
	return err.Error()
}

func (jc *JobClient) submit(ctx context.Context, s submission) (Job, bool, error) {
	name, cluster, id := s.name, s.cluster, s.id
	if strings.TrimSpace(name) == "" {
		return Job{}, false, fmt.Errorf("submit job: job name is empty")
	}
	if s.maxRetries < 0 {
		return Job{}, false, fmt.Errorf("submit job %q: max retries %d is negative", name, s.maxRetries)
	}
	known, err := jc.c.q.ServedIdentifiers(ctx, cluster)
	if err != nil {
		return Job{}, false, fmt.Errorf("submit job %q: %w", name, err)
	}
	if err := runnable(known, id, cluster); err != nil {
		return Job{}, false, fmt.Errorf("submit job %q: %w", name, err)
	}
	jobID := uuid.Must(uuid.NewV7()).String()
	if s.idemKey != "" {
		ttl := s.idemTTL
		if ttl <= 0 {
			ttl = DefaultIdempotencyTTL
		}
		reserved, err := jc.c.q.ReserveIdempotencyKey(ctx, s.idemKey, jobID, s.fingerprint(), ttl)
		if err != nil {
			return Job{}, false, fmt.Errorf("submit job %q: %w", name, err)
		}
		if reserved != jobID {
			// An earlier submission with this key: return its job, or
			// finish writing it if that submitter died first.
			if j, err := jc.c.q.GetJob(ctx, reserved); err == nil {
				return j, false, nil
			} else if !errors.Is(err, queue.ErrJobNotFound) {
				return Job{}, false, err
			}
			// Gone from Redis because it was archived: still that job,
			// never a second run of it.
			if _, archived, err := jc.c.q.ArchiveRecordOf(ctx, reserved); err != nil {
				return Job{}, false, err
			} else if archived {
				j, err := jc.getJob(ctx, reserved)
				if err != nil {
					return Job{}, false, fmt.Errorf("submit job %q: this idempotency key's job %s is archived: %w", name, reserved, err)
				}
				return j, false, nil
			}
			jobID = reserved
		}
	}
	p := queue.SubmitJobParams{ID: jobID, Name: name, Cluster: cluster,
		Task: id, Input: s.input, MaxRetries: s.maxRetries, Notify: s.notify}
	stored := s.file != nil || len(s.input) > jc.c.inputs.inline
	if stored {
		if p.Input, err = jc.storeRootInput(ctx, jobID, s); err != nil {
			return Job{}, false, fmt.Errorf("submit job %q: %w", name, err)
		}
	}
	created := true
	err = jc.c.submitJob(ctx, p)
	if errors.Is(err, queue.ErrJobExists) && s.idemKey != "" {
		created, err = false, nil // a concurrent delivery of the same submission won
	}
	if err != nil {
		return Job{}, false, err
	}
	if stored {
		jc.settleRootInput(ctx, jobID)
	}
	j, err := jc.c.q.GetJob(ctx, p.ID)
	return j, created, err
}

// storeRootInput uploads the root input of job (not created yet) and
// returns its reference. The upload is recorded as pending first: should
// the submitter die before the job exists, the archive sweep deletes it.
func (jc *JobClient) storeRootInput(ctx context.Context, job string, s submission) ([]byte, error) {
	st := jc.c.inputs.store
	err := jc.c.q.PayloadUploadPending(ctx, job, st.url, time.Now().Add(payloadPendingFor))
	if err != nil {
		return nil, err
	}
	var ref queue.PayloadRef
	if s.file != nil {
		if err := st.putFile(ctx, job, s.file.path, s.file.ref); err != nil {
			return nil, err
		}
		ref = s.file.ref
	} else if ref, err = st.put(ctx, job, s.input); err != nil {
		return nil, err
	}
	// The deadline counts from now: a long upload keeps its full hour.
	if err := jc.c.q.PayloadUploadPending(ctx, job, st.url, time.Now().Add(payloadPendingFor)); err != nil {
		return nil, err
	}
	return []byte(ref.String()), nil
}

// settleRootInput records the payload store with the created job, so its
// payloads go when it is archived, and drops the pending upload. A failure
// leaves the pending entry for the archive sweep, which does the same.
func (jc *JobClient) settleRootInput(ctx context.Context, job string) {
	url := jc.c.inputs.store.url
	err := jc.c.q.UseCache(ctx, job, url)
	if err == nil {
		err = jc.c.q.PayloadUploadSettled(ctx, job, url)
	}
	if err != nil {
		jc.c.logger.Warn("stored input not yet recorded with its job; the archive sweep does it", slog.String("job_id", job), slog.Any("error", err))
	}
}

// runnable checks that some runner of the cluster registered an identifier
// that can run id, so a job is not left queued for a task nobody serves.
func runnable(known []queue.Identifier, id queue.Identifier, cluster string) error {
	var versions []string
	for _, k := range known {
		if k.CanRun(id) {
			return nil
		}
		if k.Name == id.Name {
			versions = append(versions, k.Version())
		}
	}
	if len(versions) == 0 {
		return markErr(ErrUnknownTask, "unknown task %q in cluster %q: no runner of that cluster has registered it (start a runner that registers it, or declare it with `runfleet cluster declare`)", id.Name, cluster)
	}
	return markErr(ErrUnknownTask, "no runner of cluster %q can run %s: registered versions are %s (a runner needs the same major version and at least the minor)", cluster, id, strings.Join(versions, ", "))
}

// Get returns a job with task counts and progress. A job archived after its
// retention is read back from its archive (Archived set).
func (jc *JobClient) Get(ctx context.Context, id string) (Job, error) { return jc.getJob(ctx, id) }

// ListOptions filters List; zero values match everything.
type ListOptions struct {
	Cluster string
	State   string
	Limit   int // default 100
}

// List returns jobs, newest first.
func (jc *JobClient) List(ctx context.Context, o ListOptions) ([]Job, error) {
	if o.State != "" && !validJobState(o.State) {
		return nil, fmt.Errorf("unknown job state %q (want one of %s)", o.State, strings.Join(queue.JobStates, ", "))
	}
	return jc.c.q.ListJobs(ctx, queue.ListJobsParams{Cluster: o.Cluster, State: o.State, Limit: o.Limit})
}

func validJobState(s string) bool {
	for _, st := range queue.JobStates {
		if s == st {
			return true
		}
	}
	return false
}

// Retry puts every failed task of a failed or canceled job back to queued and
// the job back to running. Computed tasks are kept and never run again.
// An archived job is ErrJobArchived.
func (jc *JobClient) Retry(ctx context.Context, id string) error {
	return jc.unlessArchived(ctx, id, jc.c.q.RetryJob(ctx, id))
}

// Cancel stops handing out the job's tasks; running tasks finish. Retry resumes it.
// An archived job is ErrJobArchived.
func (jc *JobClient) Cancel(ctx context.Context, id string) error {
	_, err := jc.c.q.CancelJob(ctx, id)
	return jc.unlessArchived(ctx, id, err)
}

// Tasks lists every task of a job, parents before children; those of an
// archived job come from its archive.
func (jc *JobClient) Tasks(ctx context.Context, id string) ([]TaskInfo, error) {
	return jc.jobTasks(ctx, id)
}

// Attempt is one execution of a task: its runner and that runner's context,
// times, outcome, error and, for a panic, the stack.
type Attempt = queue.Attempt

// TasksPage returns up to limit tasks of a job with ids above after (-1
// for the first page), in id order, and the after of the next page (-1
// when there is none), so a job of a million tasks is read a page at a
// time. state filters by task state ("" for all); "failed" reads the job's
// failed set instead of scanning its tasks, while other states scan a
// bounded number of tasks per call, so a page may hold fewer than limit
// tasks and still have a next page. An archived job is paged from its
// archive.
func (jc *JobClient) TasksPage(ctx context.Context, jobID string, after int64, limit int, state string) ([]TaskInfo, int64, error) {
	a, ok, err := jc.c.archived(ctx, jobID)
	if err != nil {
		return nil, -1, err
	}
	if !ok {
		return jc.c.q.TasksPage(ctx, jobID, after, limit, state)
	}
	if state != "" && !slices.Contains(TaskStates, state) {
		return nil, -1, fmt.Errorf("task state %q is not one of %s", state, strings.Join(TaskStates, ", "))
	}
	if limit <= 0 {
		limit = 100
	}
	tasks := slices.Clone(a.Tasks)
	slices.SortFunc(tasks, func(x, y TaskInfo) int { return cmp.Compare(x.Seq, y.Seq) })
	var out []TaskInfo
	for i, t := range tasks {
		if t.Seq <= after || (state != "" && t.State != state) {
			continue
		}
		out = append(out, t)
		if len(out) == limit {
			if i+1 < len(tasks) {
				return out, t.Seq, nil
			}
			break
		}
	}
	return out, -1, nil
}

// Attempt outcomes.
const (
	AttemptRunning    = queue.AttemptRunning
	AttemptComputed   = queue.AttemptComputed
	AttemptFailed     = queue.AttemptFailed
	AttemptLost       = queue.AttemptLost
	AttemptHandedBack = queue.AttemptHandedBack
)

// RunnerContext is where an attempt ran.
type RunnerContext = queue.RunnerContext

// ErrTaskNotFound is returned for a task id the job does not have.
var ErrTaskNotFound = queue.ErrTaskNotFound

// Archive returns an archived job's whole archive (job, tasks, attempts,
// logs), read once, for a reader that needs several of its parts; ok is
// false when the job was never archived.
func (jc *JobClient) Archive(ctx context.Context, jobID string) (a JobArchive, ok bool, err error) {
	return jc.c.archived(ctx, jobID)
}

// Task returns one task of a job; that of an archived job comes from its
// archive.
func (jc *JobClient) Task(ctx context.Context, jobID string, taskID int64) (TaskInfo, error) {
	a, ok, err := jc.c.archived(ctx, jobID)
	if err != nil {
		return TaskInfo{}, err
	}
	if ok {
		return archivedTask(a, taskID)
	}
	return jc.c.q.GetTask(ctx, jobID, taskID)
}

// archivedTask is task taskID of archived job a.
func archivedTask(a JobArchive, taskID int64) (TaskInfo, error) {
	for _, t := range a.Tasks {
		if t.Seq == taskID {
			return t, nil
		}
	}
	return TaskInfo{}, fmt.Errorf("%w: job %s has no task %d", ErrTaskNotFound, a.Job.ID, taskID)
}

// Attempts returns every execution of one task, oldest first.
func (jc *JobClient) Attempts(ctx context.Context, jobID string, taskID int64) ([]Attempt, error) {
	a, ok, err := jc.c.archived(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if ok {
		if _, err := archivedTask(a, taskID); err != nil {
			return nil, err
		}
		return a.Attempts[taskID], nil
	}
	return jc.c.q.TaskAttempts(ctx, jobID, taskID)
}

// JobAttempts returns the attempts of every task of a job that started,
// by task id, with the tasks they belong to (parents before children).
func (jc *JobClient) JobAttempts(ctx context.Context, jobID string) ([]TaskInfo, map[int64][]Attempt, error) {
	a, ok, err := jc.c.archived(ctx, jobID)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		return a.Tasks, a.Attempts, nil
	}
	tasks, err := jc.c.q.JobTasks(ctx, jobID)
	if err != nil {
		return nil, nil, err
	}
	attempts, err := jc.c.q.JobAttempts(ctx, jobID, tasks)
	return tasks, attempts, err
}

// Finished reports whether a job state is final until someone retries it.
func Finished(state string) bool {
	return state == JobCompleted || state == JobFailed || state == JobCanceled
}

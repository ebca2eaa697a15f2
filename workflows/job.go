package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runfleet/runfleet/queue"
)

// Job is a submitted job: its state, task counts per state and progress.
type Job = queue.Job

// TaskInfo is one task of a job as listed by JobClient.Tasks.
type TaskInfo = queue.Task

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
	id, input, err := encodeInput(task, jc.c.maxInput)
	if err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", name, err)
	}
	var cfg jobConfig
	for _, o := range opts {
		o(&cfg)
	}
	return jc.submit(ctx, name, cluster, id, input, cfg.maxRetries)
}

// SubmitRequest is a submission by task name, for callers without the task's
// Go type (the CLI, HTTP submissions).
type SubmitRequest struct {
	Name       string          // job name, required
	Cluster    string          // cluster slug, required
	Task       TaskIdentifier  // root task identifier, required
	Input      json.RawMessage // root task input, a JSON object (default {})
	MaxRetries int             // retries of the root task (default 0)
}

// SubmitRaw submits a job whose root task is given by identifier and JSON input.
func (jc *JobClient) SubmitRaw(ctx context.Context, r SubmitRequest) (Job, error) {
	id, err := r.Task.parse()
	if err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", r.Name, err)
	}
	input := bytes.TrimSpace(r.Input)
	if len(input) == 0 {
		input = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(input, &obj); err != nil || obj == nil {
		return Job{}, fmt.Errorf("submit job %q: input must be a JSON object: %s", r.Name, jsonErr(err))
	}
	if jc.c.maxInput > 0 && len(input) > jc.c.maxInput {
		return Job{}, fmt.Errorf("submit job %q: input is %d bytes, over the %d byte limit", r.Name, len(input), jc.c.maxInput)
	}
	return jc.submit(ctx, r.Name, r.Cluster, id, input, r.MaxRetries)
}

func jsonErr(err error) string {
	if err == nil {
		return "got null"
	}
	return err.Error()
}

func (jc *JobClient) submit(ctx context.Context, name, cluster string, id queue.Identifier, input []byte, maxRetries int) (Job, error) {
	if strings.TrimSpace(name) == "" {
		return Job{}, fmt.Errorf("submit job: job name is empty")
	}
	if maxRetries < 0 {
		return Job{}, fmt.Errorf("submit job %q: max retries %d is negative", name, maxRetries)
	}
	if _, err := jc.c.q.GetCluster(ctx, cluster); err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", name, err)
	}
	known, err := jc.c.q.RegisteredIdentifiers(ctx, cluster)
	if err != nil {
		return Job{}, err
	}
	if err := runnable(known, id, cluster); err != nil {
		return Job{}, fmt.Errorf("submit job %q: %w", name, err)
	}
	p := queue.SubmitJobParams{ID: uuid.Must(uuid.NewV7()).String(), Name: name, Cluster: cluster,
		Task: id, Input: input, MaxRetries: maxRetries}
	if err := jc.c.q.SubmitJob(ctx, p); err != nil {
		return Job{}, err
	}
	return jc.c.q.GetJob(ctx, p.ID)
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
		return fmt.Errorf("unknown task %q in cluster %q: no runner of that cluster has registered it (start a runner that registers it first)", id.Name, cluster)
	}
	return fmt.Errorf("no runner of cluster %q can run %s: registered versions are %s (a runner needs the same major version and at least the minor)", cluster, id, strings.Join(versions, ", "))
}

// Get returns a job with task counts and progress.
func (jc *JobClient) Get(ctx context.Context, id string) (Job, error) { return jc.c.q.GetJob(ctx, id) }

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
func (jc *JobClient) Retry(ctx context.Context, id string) error { return jc.c.q.RetryJob(ctx, id) }

// Cancel stops handing out the job's tasks; running tasks finish. Retry resumes it.
func (jc *JobClient) Cancel(ctx context.Context, id string) error {
	_, err := jc.c.q.CancelJob(ctx, id)
	return err
}

// Tasks lists every task of a job, parents before children.
func (jc *JobClient) Tasks(ctx context.Context, id string) ([]TaskInfo, error) {
	return jc.c.q.JobTasks(ctx, id)
}

// Finished reports whether a job state is final until someone retries it.
func Finished(state string) bool {
	return state == JobCompleted || state == JobFailed || state == JobCanceled
}

// Wait polls the job until it is completed, failed or canceled, calling
// onUpdate (if set) with each poll. It returns the final job, or ctx's error.
func (jc *JobClient) Wait(ctx context.Context, id string, every time.Duration, onUpdate func(Job)) (Job, error) {
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		j, err := jc.Get(ctx, id)
		if err != nil {
			return j, err
		}
		if onUpdate != nil {
			onUpdate(j)
		}
		if Finished(j.State) {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-t.C:
		}
	}
}

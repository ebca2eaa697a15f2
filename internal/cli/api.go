package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/workflows"
)

// The --api mode: job submit, get, list, cancel, retry and wait (and
// submit --wait) call the HTTP API v1 with a bearer token instead of Redis,
// for people who may submit jobs but must not hold Redis credentials. The
// other commands keep using Redis.

// Environment variables of the --api mode.
const (
	envAPIURL   = "RUNFLEET_API_URL"
	envAPIToken = "RUNFLEET_API_TOKEN"
)

// apiFlags are the global --api and --token flags.
type apiFlags struct {
	url   string // --api
	token string // --token
}

// addAPIFlags adds --api and --token to root. Their defaults come from the
// environment when a command runs, so --help never shows a token.
func (a *app) addAPIFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&a.api.url, "api", "",
		"HTTP API base URL; job submit, get, list, cancel, retry and wait then use the API instead of Redis (default $"+envAPIURL+")")
	f.StringVar(&a.api.token, "token", "",
		"API bearer token for --api (default $"+envAPIToken+", which keeps it out of the process list)")
}

// apiURL is the API base URL in effect and where it came from; "" when the
// commands use Redis.
func (a *app) apiURL() (u, source string) {
	if a.api.url != "" {
		return a.api.url, "--api"
	}
	return os.Getenv(envAPIURL), "$" + envAPIURL
}

// apiMode reports whether job commands go through the HTTP API.
func (a *app) apiMode() bool {
	u, _ := a.apiURL()
	return u != ""
}

// apiClient returns the API client for --api.
func (a *app) apiClient() (*controlplane.Client, error) {
	raw, source := a.apiURL()
	token := a.api.token
	if token == "" {
		token = os.Getenv(envAPIToken)
	}
	if token == "" {
		return nil, usageErrorf("%s is set but no token is: set $%s (or pass --token)", source, envAPIToken)
	}
	c, err := controlplane.NewClient(raw, token, controlplane.WithLogger(a.logger))
	switch {
	case errors.Is(err, controlplane.ErrInvalidBaseURL):
		return nil, usageErrorf("%s: %v", source, err)
	case errors.Is(err, controlplane.ErrInvalidToken):
		tokenSource := "--token"
		if a.api.token == "" {
			tokenSource = "$" + envAPIToken
		}
		return nil, usageErrorf("%s: %v", tokenSource, err)
	case err != nil:
		return nil, err
	}
	return c, nil
}

// apiErr adds a hint to errors of the API.
func (a *app) apiErr(err error) error {
	var ae *controlplane.APIError
	if !errors.As(err, &ae) {
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		u, source := a.apiURL()
		return &hintError{err: err, hint: fmt.Sprintf("is the runfleet API reachable at %s (from %s)?", redactURL(u), source)}
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		return &hintError{err: err, hint: "check the token in $" + envAPIToken + " or --token; an admin creates one with: runfleet token create"}
	case http.StatusForbidden:
		return &hintError{err: err, hint: "the token's scope or clusters do not allow this; an admin can show them with: runfleet token list"}
	case http.StatusNotFound:
		return &hintError{err: err, hint: "list recent jobs with: runfleet job list"}
	case http.StatusTooManyRequests:
		return &hintError{err: err, hint: "the token's rate limit was reached; try again later"}
	}
	return err
}

// apiSubmit is job submit in --api mode.
func (a *app) apiSubmit(ctx context.Context, req workflows.SubmitRequest, wait bool, wo waitOptions) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	// A RawMessage that is not JSON cannot be sent; say what Redis mode says.
	input := bytes.TrimSpace(req.Input)
	if len(input) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(input, &obj); err != nil || obj == nil {
			msg := "got null"
			if err != nil {
				msg = err.Error()
			}
			return fmt.Errorf("submit job %q: input must be a JSON object: %s", req.Name, msg)
		}
	}
	// Without --idempotency-key the client makes up a key for this
	// invocation, which every retry of the submission carries.
	key := req.IdempotencyKey
	j, created, err := c.SubmitJob(ctx, controlplane.SubmitJobRequest{
		Cluster: req.Cluster, Name: req.Name, Task: req.Task.Name, Version: req.Task.Version,
		Input: input, MaxRetries: req.MaxRetries, Notify: req.Notify,
	}, key)
	if err != nil {
		return a.apiErr(err)
	}
	if !created {
		fmt.Fprintf(a.err, "job %s was already submitted with idempotency key %q; not submitted again\n", j.ID, key)
	}
	fmt.Fprintln(a.out, j.ID)
	if !wait {
		return nil
	}
	return a.waitJob(ctx, apiJobs{a: a, c: c}, j.ID, wo)
}

// apiGet is job get in --api mode.
func (a *app) apiGet(ctx context.Context, id string, asJSON bool) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	j, err := c.GetJob(ctx, id)
	if err != nil {
		return a.apiErr(err)
	}
	if asJSON {
		return writeJSON(a.out, j)
	}
	return writeJob(a.out, j)
}

// maxAPIPage is the largest page GET /v1/jobs returns.
const maxAPIPage = 1000

// apiList is job list in --api mode: it follows the pages until it has
// limit jobs or there are no more.
func (a *app) apiList(ctx context.Context, opts workflows.ListOptions, asJSON bool) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	jobs := []workflows.Job{}
	q := controlplane.ListJobsQuery{Cluster: opts.Cluster, State: opts.State}
	for len(jobs) < opts.Limit {
		q.Limit = min(opts.Limit-len(jobs), maxAPIPage)
		p, err := c.ListJobs(ctx, q)
		if err != nil {
			return a.apiErr(err)
		}
		jobs = append(jobs, p.Jobs...)
		if p.NextCursor == "" || len(p.Jobs) == 0 {
			break
		}
		q.Cursor = p.NextCursor
	}
	jobs = jobs[:min(len(jobs), opts.Limit)]
	if asJSON {
		return writeJSON(a.out, jobs)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(a.err, "no jobs found")
		return nil
	}
	return writeJobTable(a.out, jobs, time.Now())
}

// apiCancel is job cancel in --api mode.
func (a *app) apiCancel(ctx context.Context, id string) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	j, err := c.GetJob(ctx, id)
	if err != nil {
		return a.apiErr(err)
	}
	if j.State == workflows.JobCanceled || j.State == workflows.JobFailed {
		fmt.Fprintf(a.out, "job %s is already %s; nothing to cancel\n", id, j.State)
		return nil
	}
	if _, err := c.CancelJob(ctx, id); err != nil {
		return a.apiErr(err)
	}
	fmt.Fprintf(a.out, "canceled job %s; running tasks finish (resume with: runfleet job retry %s)\n", id, id)
	return nil
}

// apiRetry is job retry in --api mode.
func (a *app) apiRetry(ctx context.Context, id string) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	j, err := c.GetJob(ctx, id)
	if err != nil {
		return a.apiErr(err)
	}
	if j.State == workflows.JobSubmitted || j.State == workflows.JobRunning {
		fmt.Fprintf(a.out, "job %s is %s; nothing to retry\n", id, j.State)
		return nil
	}
	if j, err = c.RetryJob(ctx, id); err != nil {
		return a.apiErr(err)
	}
	fmt.Fprintf(a.out, "retried job %s; it is %s (%s)\n", id, j.State, countsSummary(j))
	return nil
}

// apiWait is job wait in --api mode.
func (a *app) apiWait(ctx context.Context, id string, wo waitOptions) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	return a.waitJob(ctx, apiJobs{a: a, c: c}, id, wo)
}

// apiJobs polls a job through GET /v1/jobs/{id} for waitJob.
type apiJobs struct {
	a *app
	c *controlplane.Client
}

// Wait polls the job every every (0: defaultPollInterval) until it is
// completed, failed or canceled, calling onUpdate with each poll. The HTTP
// API has no events, so unlike workflows.JobClient.Wait this is polling.
func (w apiJobs) Wait(ctx context.Context, id string, every time.Duration, onUpdate func(workflows.Job)) (workflows.Job, error) {
	if every <= 0 {
		every = defaultPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		j, err := w.c.GetJob(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return j, ctx.Err()
			}
			return j, w.a.apiErr(err)
		}
		if onUpdate != nil {
			onUpdate(j)
		}
		if workflows.Finished(j.State) {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-t.C:
		}
	}
}

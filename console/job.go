package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

const (
	// tasksPerPage is the length of the job page's task table.
	tasksPerPage = 50
	// failuresShown is how many failed tasks the job page lists up top.
	failuresShown = 5
	// logsShown is how many log records the job page shows.
	logsShown = 100
	// maxIDLength bounds a job id read from a URL: longer is no job.
	maxIDLength = 128
)

type jobView struct {
	Job       queue.Job
	Total     int64
	Counts    []stateCount
	CanAct    bool // the token may retry and cancel
	CanRetry  bool
	CanCancel bool
	Finished  bool
	Notice    string
	Graph     template.HTML
	GraphErr  string
	// GraphDeferred: the job is too big to draw before the page answers
	// (Config.InlineGraphTasks); the page loads its graph after it shows.
	GraphDeferred bool
	// The task table: its filter ("" or a task state), where it starts
	// (-1: at the first task) and where the next page starts (-1: none).
	TaskFilter   string
	TaskStates   []string
	After, Next  int64
	Tasks        []queue.Task
	Failures     []queue.Task
	MoreFailures bool
	Runners      []queue.RunnerContext
	Logs         []queue.LogRecord
	MoreLogs     string // the cursor of the logs page after these, "" if none
}

// stateCount is one cell of a job's task counts, with its segment of the
// bar of states (in thousandths, each non-empty state at least 4 wide).
type stateCount struct {
	State         string
	N             int64
	Offset, Width int64
}

func countsOf(j queue.Job) ([]stateCount, int64) {
	var total int64
	for _, n := range j.TaskCounts {
		total += n
	}
	out := make([]stateCount, len(workflows.TaskStates))
	var done, x int64
	for i, st := range workflows.TaskStates {
		n := j.TaskCounts[st]
		out[i] = stateCount{State: st, N: n, Offset: x}
		if n > 0 && total > 0 {
			done += n
			end := min(max(done*1000/total, x+4), 1000)
			out[i].Width = end - x
			x = end
		}
	}
	return out, total
}

// loadJob reads the job of the path's {id}: from Redis, or from its archive
// once it left Redis. It answers 404 or 403 itself and returns false then.
func (c *Console) loadJob(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session) (queue.Job, *workflows.JobArchive, bool) {
	id := r.PathValue("id")
	var j queue.Job
	var arch *workflows.JobArchive
	var err error
	if len(id) > maxIDLength {
		err = fmt.Errorf("%w: %q", queue.ErrJobNotFound, id)
	} else if j, err = c.q.GetJob(ctx, id); errors.Is(err, queue.ErrJobNotFound) {
		// Its archive, if it has one: read once, for every part of the page.
		a, ok, aerr := c.cfg.Client.Jobs().Archive(ctx, id)
		switch {
		case aerr != nil:
			err = aerr
		case ok:
			j, arch, err = a.Job, &a, nil
		}
	}
	if errors.Is(err, queue.ErrJobNotFound) {
		c.errorPage(w, r, s, http.StatusNotFound, "Job not found",
			fmt.Sprintf("There is no job %q: it never existed, or it was archived and its archive is gone.", short(80, id)),
			"Find the job in the list of jobs.")
		return j, nil, false
	}
	if err != nil {
		c.internalError(w, r, s, "get job", err)
		return j, nil, false
	}
	if !s.token.Allows(j.Cluster) {
		c.errorPage(w, r, s, http.StatusForbidden, "Not allowed",
			fmt.Sprintf("Token %q may not see jobs of cluster %q.", s.token.Name, j.Cluster), "")
		return j, nil, false
	}
	return j, arch, true
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	j, arch, ok := c.loadJob(ctx, w, r, s)
	if !ok {
		return
	}
	q := r.URL.Query()
	v := jobView{Job: j, TaskFilter: q.Get("tasks"), TaskStates: workflows.TaskStates, After: -1,
		Finished: workflows.Finished(j.State), Notice: noticeOf(q.Get("done"))}
	v.Counts, v.Total = countsOf(j)
	v.CanAct = s.canAct() && !j.Archived
	v.CanRetry = v.CanAct && (j.State == workflows.JobFailed || j.State == workflows.JobCanceled)
	v.CanCancel = v.CanAct && (j.State == workflows.JobSubmitted || j.State == workflows.JobRunning)
	if v.TaskFilter != "" && !slices.Contains(workflows.TaskStates, v.TaskFilter) {
		c.badFilter(w, r, s, "tasks", fmt.Sprintf("Task state %q is not one of %s.", v.TaskFilter, strings.Join(workflows.TaskStates, ", ")))
		return
	}
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < -1 {
			c.badFilter(w, r, s, "after", fmt.Sprintf("After %q is not a task id (a number from -1 up).", a))
			return
		}
		v.After = n
	}
	src := c.tasksOf(j, arch)
	var err error
	if v.Tasks, v.Next, err = src.page(ctx, v.After, tasksPerPage, v.TaskFilter); err != nil {
		c.internalError(w, r, s, "read tasks", err)
		return
	}
	if j.TaskCounts[workflows.TaskFailed] > 0 {
		var next int64
		if v.Failures, next, err = src.page(ctx, -1, failuresShown, workflows.TaskFailed); err != nil {
			c.internalError(w, r, s, "read failed tasks", err)
			return
		}
		v.MoreFailures = next >= 0
	}
	if (c.cfg.InlineGraphTasks < 0 || v.Total > c.cfg.InlineGraphTasks) && !c.graphCached(j, src) {
		v.GraphDeferred = true
	} else if svg, err := c.graphSVG(ctx, j, src); err != nil {
		c.log.Warn("console: draw job graph", "job", j.ID, "err", err)
		v.GraphErr = "The graph could not be drawn: " + err.Error()
	} else {
		v.Graph = template.HTML(svg) // jobgraph escapes every text it writes
	}
	if v.Runners, err = src.runners(ctx); err != nil {
		c.internalError(w, r, s, "read runners", err)
		return
	}
	if v.Logs, err = src.logs(ctx, queue.LogQuery{Task: -1, Limit: logsShown + 1}); err != nil {
		c.internalError(w, r, s, "read logs", err)
		return
	}
	if len(v.Logs) > logsShown {
		v.Logs = v.Logs[:logsShown]
		v.MoreLogs = v.Logs[logsShown-1].ID
	}
	c.render(w, r, s, http.StatusOK, "job", j.Name+" · job", v)
}

// noticeOf is the banner after an action redirected back to the job.
func noticeOf(done string) string {
	switch done {
	case "retry":
		return "Retry requested: the failed tasks are queued again."
	case "cancel":
		return "Cancel requested: no more tasks are handed out; running ones finish."
	}
	return ""
}

func (c *Console) changeJob(action string) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		ctx, cancel := pageContext(r)
		defer cancel()
		if !s.canAct() {
			c.errorPage(w, r, s, http.StatusForbidden, "Not allowed",
				fmt.Sprintf("Token %q has scope %s; to %s a job it needs submit or admin.", s.token.Name, s.token.Scope, action),
				"Log in with a token of scope submit.")
			return
		}
		j, _, ok := c.loadJob(ctx, w, r, s)
		if !ok {
			return
		}
		var err error
		if action == "retry" {
			err = c.cfg.Client.Jobs().Retry(ctx, j.ID)
		} else {
			err = c.cfg.Client.Jobs().Cancel(ctx, j.ID)
		}
		switch {
		case errors.Is(err, workflows.ErrJobCompleted):
			c.errorPage(w, r, s, http.StatusConflict, "Nothing to "+action,
				fmt.Sprintf("Job %q is completed; there is nothing to %s.", j.ID, action), "")
			return
		case errors.Is(err, workflows.ErrJobArchived):
			c.errorPage(w, r, s, http.StatusConflict, "Job archived",
				fmt.Sprintf("Job %q is archived and read-only.", j.ID), "Submit it again instead.")
			return
		case err != nil:
			c.internalError(w, r, s, action+" job", err)
			return
		}
		c.log.Info("console: job "+action, "job", j.ID, "token", s.token.Name)
		http.Redirect(w, r, "/jobs/"+j.ID+"?done="+action, http.StatusSeeOther)
	}
}

func (c *Console) jobGraph(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	j, arch, ok := c.loadJob(ctx, w, r, s)
	if !ok {
		return
	}
	src := c.tasksOf(j, arch)
	svg, err := c.graphSVG(ctx, j, src)
	if err != nil {
		c.internalError(w, r, s, "draw job graph", err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(svg)
}

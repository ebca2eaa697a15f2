package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/runfleet/runfleet/queue"
)

// taskLogsShown is how many log records the task page shows.
const taskLogsShown = 200

type taskView struct {
	Job      queue.Job
	Task     queue.Task
	Attempts []queue.Attempt
	Logs     []queue.LogRecord
	MoreLogs string
	// FirstChild and LastChild bound the task's subtasks (-1 when none).
	FirstChild, LastChild int64
}

func (c *Console) taskPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	j, arch, ok := c.loadJob(ctx, w, r, s)
	if !ok {
		return
	}
	raw := r.PathValue("seq")
	notFound := func() {
		c.errorPage(w, r, s, http.StatusNotFound, "Task not found",
			fmt.Sprintf("Job %s has no task %q; task ids are numbers from 0 (the root task).", j.ID, short(40, raw)),
			"Find the task in the job's task table.")
	}
	seq, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || seq < 0 {
		notFound()
		return
	}
	src := c.tasksOf(j, arch)
	found, err := src.tasks(ctx, []int64{seq})
	if err != nil {
		c.internalError(w, r, s, "read task", err)
		return
	}
	if len(found) == 0 {
		notFound()
		return
	}
	v := taskView{Job: j, Task: found[0], FirstChild: -1, LastChild: -1}
	if n := len(v.Task.Children); n > 0 {
		v.FirstChild, v.LastChild = v.Task.Children[0], v.Task.Children[n-1]
	}
	v.Attempts, err = src.attempts(ctx, seq)
	if errors.Is(err, queue.ErrTaskNotFound) {
		notFound()
		return
	}
	if err != nil {
		c.internalError(w, r, s, "read attempts", err)
		return
	}
	if v.Logs, err = src.logs(ctx, queue.LogQuery{Task: seq, Limit: taskLogsShown + 1}); err != nil {
		c.internalError(w, r, s, "read logs", err)
		return
	}
	if len(v.Logs) > taskLogsShown {
		v.Logs = v.Logs[:taskLogsShown]
		v.MoreLogs = v.Logs[taskLogsShown-1].ID
	}
	c.render(w, r, s, http.StatusOK, "task", fmt.Sprintf("%s #%d · %s", v.Task.Name, seq, j.Name), v)
}

const (
	logsPerPage    = 500
	maxLogCursor   = 64
	maxTaskIDInURL = 20
)

type logsView struct {
	Job   queue.Job
	Task  int64 // -1: every task
	After string
	Logs  []queue.LogRecord
	Next  string
}

// jobLogsPage pages through a job's stored log records, optionally of one
// task.
func (c *Console) jobLogsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	j, arch, ok := c.loadJob(ctx, w, r, s)
	if !ok {
		return
	}
	q := r.URL.Query()
	v := logsView{Job: j, Task: -1, After: q.Get("after")}
	if t := q.Get("task"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 || len(t) > maxTaskIDInURL {
			c.badFilter(w, r, s, "task", fmt.Sprintf("Task %q is not a task id (a number from 0 up).", short(40, t)))
			return
		}
		v.Task = n
	}
	if !validLogCursor(v.After) {
		c.badFilter(w, r, s, "after", fmt.Sprintf("After %q is not a log cursor (a stream entry id such as 1712345678901-0).", short(40, v.After)))
		return
	}
	src := c.tasksOf(j, arch)
	var err error
	v.Logs, err = src.logs(ctx, queue.LogQuery{Task: v.Task, After: v.After, Limit: logsPerPage + 1})
	if err != nil {
		c.internalError(w, r, s, "read logs", err)
		return
	}
	if len(v.Logs) > logsPerPage {
		v.Logs = v.Logs[:logsPerPage]
		v.Next = v.Logs[logsPerPage-1].ID
	}
	c.render(w, r, s, http.StatusOK, "logs", "Logs · "+j.Name, v)
}

// validLogCursor accepts "" and stream entry ids "<ms>-<seq>".
func validLogCursor(s string) bool {
	if s == "" {
		return true
	}
	if len(s) > maxLogCursor {
		return false
	}
	dash := false
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
		case r == '-' && !dash && i > 0 && i < len(s)-1:
			dash = true
		default:
			return false
		}
	}
	return dash
}

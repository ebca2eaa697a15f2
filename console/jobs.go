package console

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
	"github.com/runfleet/runfleet/workflows"
)

const (
	defaultJobsPerPage = 50
	maxJobsPerPage     = 500
	maxNameFilter      = 200
)

type jobsView struct {
	Cluster, State, Name string
	Limit                int
	FailedOnly           bool
	Clusters             []string // the clusters the token may see
	States               []string
	Jobs                 []jobRow
	Cursor               string // this page's
	NextCursor           string
	// Partial says the name search stopped before the page was full.
	Partial bool
}

type jobRow struct {
	queue.Job
	Total  int64
	Failed int64
}

func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	q := r.URL.Query()
	v := jobsView{Cluster: q.Get("cluster"), State: q.Get("state"), Name: strings.TrimSpace(q.Get("name")),
		Limit: defaultJobsPerPage, Cursor: q.Get("cursor"), States: workflows.JobStates}
	v.FailedOnly = v.State == workflows.JobFailed
	all, err := c.cfg.Client.Clusters().List(ctx)
	if err != nil {
		c.internalError(w, r, s, "list clusters", err)
		return
	}
	for _, cl := range all {
		if s.token.Allows(cl.Slug) {
			v.Clusters = append(v.Clusters, cl.Slug)
		}
	}
	if v.Cluster != "" {
		if err := rftype.ValidateSlug("cluster", v.Cluster); err != nil {
			c.badFilter(w, r, s, "cluster", err.Error())
			return
		}
		if !slices.ContainsFunc(all, func(cl workflows.Cluster) bool { return cl.Slug == v.Cluster }) {
			c.badFilter(w, r, s, "cluster", fmt.Sprintf("There is no cluster %q.", v.Cluster))
			return
		}
		if !s.token.Allows(v.Cluster) {
			c.errorPage(w, r, s, http.StatusForbidden, "Not allowed",
				fmt.Sprintf("Token %q may not see jobs of cluster %q.", s.token.Name, v.Cluster), "")
			return
		}
	}
	if v.Cluster == "" && len(s.token.Clusters) > 0 {
		// A token limited to some clusters lists one of them at a time.
		if len(v.Clusters) == 0 {
			c.errorPage(w, r, s, http.StatusForbidden, "Not allowed",
				fmt.Sprintf("Token %q may see none of the existing clusters.", s.token.Name), "")
			return
		}
		v.Cluster = v.Clusters[0]
	}
	if v.State != "" && !slices.Contains(workflows.JobStates, v.State) {
		c.badFilter(w, r, s, "state", fmt.Sprintf("State %q is not one of %s.", v.State, strings.Join(workflows.JobStates, ", ")))
		return
	}
	if len(v.Name) > maxNameFilter {
		c.badFilter(w, r, s, "name", fmt.Sprintf("The name filter is over %d characters.", maxNameFilter))
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxJobsPerPage {
			c.badFilter(w, r, s, "limit", fmt.Sprintf("Limit %q is not a number from 1 to %d.", l, maxJobsPerPage))
			return
		}
		v.Limit = n
	}
	jobs, next, err := c.q.FindJobs(ctx, queue.FindJobsParams{Cluster: v.Cluster, State: v.State, Name: v.Name,
		Limit: v.Limit, Cursor: v.Cursor})
	if errors.Is(err, queue.ErrInvalidCursor) {
		c.badFilter(w, r, s, "cursor", fmt.Sprintf("Cursor %q is not one this console handed out.", v.Cursor))
		return
	}
	if err != nil {
		c.internalError(w, r, s, "list jobs", err)
		return
	}
	for _, j := range jobs {
		if !s.token.Allows(j.Cluster) {
			continue
		}
		row := jobRow{Job: j, Failed: j.TaskCounts[workflows.TaskFailed]}
		for _, n := range j.TaskCounts {
			row.Total += n
		}
		v.Jobs = append(v.Jobs, row)
	}
	v.NextCursor = next
	v.Partial = v.Name != "" && next != "" && len(jobs) < v.Limit
	title := "Jobs"
	if v.FailedOnly {
		title = "Failed jobs"
	}
	c.render(w, r, s, http.StatusOK, "jobs", title, v)
}

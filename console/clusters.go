package console

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
)

type clustersView struct {
	Clusters []clusterView
}

type clusterView struct {
	queue.Cluster
	Runners     []queue.RunnerInfo
	Deployments []queue.Deployment
	Queues      []queue.IdentifierQueue
	Ready       int64
}

func (c *Console) clustersPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	all, err := c.q.ListClusters(ctx)
	if err != nil {
		c.internalError(w, r, s, "list clusters", err)
		return
	}
	var v clustersView
	for _, cl := range all {
		if !s.token.Allows(cl.Slug) {
			continue
		}
		cv := clusterView{Cluster: cl}
		if cv.Runners, err = c.q.ListRunners(ctx, cl.Slug); err != nil {
			c.internalError(w, r, s, "list runners of "+cl.Slug, err)
			return
		}
		if _, cv.Deployments, err = c.q.Deployments(ctx, cl.Slug); err != nil {
			c.internalError(w, r, s, "list deployments of "+cl.Slug, err)
			return
		}
		if cv.Queues, err = c.q.IdentifierQueues(ctx, cl.Slug); err != nil {
			c.internalError(w, r, s, "read queues of "+cl.Slug, err)
			return
		}
		for _, iq := range cv.Queues {
			cv.Ready += iq.Ready
		}
		v.Clusters = append(v.Clusters, cv)
	}
	c.render(w, r, s, http.StatusOK, "clusters", "Clusters", v)
}

// devices lists a runner's GPUs for the clusters page.
func devices(ds []rftype.Device) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("GPU %d", d.Index)
		if d.Name != "" {
			parts[i] += " " + d.Name
		}
	}
	return strings.Join(parts, ", ")
}

type automationsView struct {
	Automations []automationRow
}

type automationRow struct {
	controlplane.Automation
	NextRun  string
	LastTick string
}

func (c *Console) automationsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	all, err := controlplane.ListAutomations(ctx, c.cfg.Client)
	if err != nil {
		c.internalError(w, r, s, "list automations", err)
		return
	}
	ticks, err := c.q.CronTicks(ctx)
	if err != nil {
		c.internalError(w, r, s, "read cron ticks", err)
		return
	}
	now := c.cfg.Now()
	var v automationsView
	for _, a := range all {
		if !s.token.Allows(a.Cluster) {
			continue
		}
		row := automationRow{Automation: a}
		if next := a.NextRun(now); !next.IsZero() {
			row.NextRun = when(next)
		}
		if t, ok := ticks[a.ID]; ok && t > 0 {
			row.LastTick = when(time.UnixMilli(t))
		}
		v.Automations = append(v.Automations, row)
	}
	c.render(w, r, s, http.StatusOK, "automations", "Automations", v)
}

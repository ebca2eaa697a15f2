package console

import (
	"bytes"
	"context"
	"sync"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// DefaultInlineGraphTasks is Config.InlineGraphTasks by default. The graph
// reads every task (about 2.5 s for a million on a small machine), so a
// bigger job's page answers at once and loads the graph afterwards
// (/jobs/<id>/graph.svg), unless it is cached.
const DefaultInlineGraphTasks = 20_000

// graphCached reports whether the job's graph is cached as it is now.
func (c *Console) graphCached(j queue.Job, src taskSource) bool {
	if !workflows.Finished(j.State) {
		return false
	}
	_, ok := c.graphs.get(j.ID, src.stamp())
	return ok
}

// graphSVG draws the job's graph as the CLI's `runfleet job graph` does:
// the same model and renderer, fed by a cheaper read. Every task is read
// with the five fields the layout needs (queue.GraphTasks); the full
// record is read only for the nodes drawn, which are few once big fan-outs
// are collapsed, to label them with version, display name and error.
// Graphs of finished jobs are cached under the job's state and counts.
func (c *Console) graphSVG(ctx context.Context, j queue.Job, src taskSource) ([]byte, error) {
	stamp := src.stamp()
	cacheable := workflows.Finished(j.State)
	if cacheable {
		if svg, ok := c.graphs.get(j.ID, stamp); ok {
			return svg, nil
		}
	}
	tasks, leaves, err := src.graphTasks(ctx)
	if err != nil {
		return nil, err
	}
	g := jobgraph.Build(j, tasks, jobgraph.Options{Leaves: leaves})
	full, err := src.tasks(ctx, g.NodeSeqs())
	if err != nil {
		return nil, err
	}
	g.Label(full)
	var b bytes.Buffer
	if err := g.WriteSVG(&b); err != nil {
		return nil, err
	}
	if cacheable {
		c.graphs.put(j.ID, stamp, b.Bytes())
	}
	return b.Bytes(), nil
}

// graphCache keeps the SVGs of a few finished jobs, dropping the least
// recently used.
type graphCache struct {
	mu    sync.Mutex
	limit int
	tick  uint64
	byJob map[string]*cachedGraph
}

type cachedGraph struct {
	stamp string
	svg   []byte
	used  uint64
}

func newGraphCache(limit int) *graphCache {
	return &graphCache{limit: limit, byJob: map[string]*cachedGraph{}}
}

func (gc *graphCache) get(job, stamp string) ([]byte, bool) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	e, ok := gc.byJob[job]
	if !ok || e.stamp != stamp {
		return nil, false
	}
	gc.tick++
	e.used = gc.tick
	return e.svg, true
}

func (gc *graphCache) put(job, stamp string, svg []byte) {
	if gc.limit <= 0 {
		return
	}
	gc.mu.Lock()
	defer gc.mu.Unlock()
	gc.tick++
	gc.byJob[job] = &cachedGraph{stamp: stamp, svg: svg, used: gc.tick}
	for len(gc.byJob) > gc.limit {
		oldest := ""
		for id, e := range gc.byJob {
			if oldest == "" || e.used < gc.byJob[oldest].used {
				oldest = id
			}
		}
		delete(gc.byJob, oldest)
	}
}

// Package jobgraph turns a job's tasks into a picture: the task tree plus
// dependency edges, coloured by state, laid out in layers, and written as
// SVG, Graphviz DOT or a Mermaid flowchart.
//
// The model (Build) is separate from the renderers so that the CLI and the
// web console draw the same graph. Everything is deterministic: nodes and
// edges are ordered by task seq and the layout uses fixed sizes (no font
// metrics), so the same job always gives the same bytes.
//
// Big fan-outs stay readable and cheap: siblings of one parent sharing a task
// name are collapsed into one node with counts per state once there are more
// than Options.CollapseOver of them, and their subtrees are collapsed with
// them, so a 100,000-task fan-out is a handful of nodes.
package jobgraph

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/runfleet/runfleet/workflows"
)

// DefaultCollapseOver is the default Options.CollapseOver.
const DefaultCollapseOver = 20

// Options tunes Build.
type Options struct {
	// CollapseOver is how many siblings with one task name are drawn one by
	// one; more than that become one node. Default DefaultCollapseOver (20).
	CollapseOver int
	// Leaves are computed tasks read as counts, not as tasks
	// (queue.GraphSummary): each group is drawn collapsed with its siblings
	// of the same name, whatever CollapseOver says.
	Leaves []workflows.LeafGroup
}

// Graph is a job's task graph, laid out.
type Graph struct {
	JobID    string
	JobName  string
	JobState string
	Progress []workflows.ProgressInfo
	Tasks    int64  // tasks in the job
	Nodes    []Node // ordered by first seq
	Edges    []Edge // tree edges first, then dependencies, each by (from, to)
	Layers   int    // number of layers; node layers are 0..Layers-1
	Width    int    // of the SVG, in pixels
	Height   int
}

// Node is one task, or a group of collapsed sibling tasks (Count > 1 or
// Group set) with their collapsed subtrees.
type Node struct {
	Seq     int64  // the task's seq; for a group, its lowest
	Name    string // task name
	Version string
	Display string // a single task's display name
	Error   string // a single task's error, first line
	State   string // the task's state; for a group, its most notable one
	Group   bool
	Count   int64
	States  []StateCount // per-state counts, in workflows.TaskStates order, non-zero only
	Layer   int
	Column  int // position within its layer, from 0, counting edge bends
	X, Y    int // top-left corner in the SVG, in pixels
}

// StateCount is how many tasks of a node are in one state.
type StateCount struct {
	State string
	N     int64
}

// EdgeKind tells a parent→child edge from a dependency.
type EdgeKind int

const (
	// Child links a parent to a subtask it submitted.
	Child EdgeKind = iota
	// Dependency links a task to one that waits for it.
	Dependency
)

// Edge links two nodes by index into Graph.Nodes.
type Edge struct {
	From, To int
	Kind     EdgeKind
	// Bends are the points a long edge passes through, one per layer it
	// crosses, so it runs between nodes instead of through them.
	Bends []Point
}

// Point is a position in the SVG, in pixels.
type Point struct{ X, Y int }

// notability orders states for a group's colour: what needs attention wins.
var notability = map[string]int{
	workflows.TaskFailed: 6, workflows.TaskRunning: 5, workflows.TaskQueued: 4,
	workflows.TaskFailedOptional: 3, workflows.TaskSkipped: 2, workflows.TaskComputed: 1,
}

// groupKey names a collapsed node: its parent node and the task name.
type groupKey struct {
	parent int
	name   string
}

// Build makes the graph of job from its tasks (as JobClient.Tasks returns
// them: parents before children) and lays it out.
func Build(job workflows.Job, tasks []workflows.TaskInfo, o Options) *Graph {
	if o.CollapseOver <= 0 {
		o.CollapseOver = DefaultCollapseOver
	}
	g := &Graph{JobID: job.ID, JobName: job.Name, JobState: job.State, Progress: job.Progress,
		Tasks: int64(len(tasks))}

	bySeq := make(map[int64]int, len(tasks))
	for i, t := range tasks {
		bySeq[t.Seq] = i
	}
	// Tasks in seq order; parents have lower seqs than their children.
	order := make([]int, len(tasks))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmpInt64(tasks[a].Seq, tasks[b].Seq) })

	// How many siblings share a name under each parent; counted leaves
	// always collapse.
	type sibKey struct {
		parent int64
		name   string
	}
	siblings := make(map[sibKey]int, 16)
	for _, t := range tasks {
		if _, ok := bySeq[t.Parent]; ok && t.Parent != t.Seq {
			siblings[sibKey{t.Parent, t.Name}]++
		}
	}
	for _, l := range o.Leaves {
		siblings[sibKey{l.Parent, l.Name}] += max(int(l.Count), o.CollapseOver+1)
		g.Tasks += l.Count
	}
	// The tasks and the leaf groups, in seq order (a group at its least
	// seq): nodes are made in the order of their first task.
	type item struct {
		seq         int64
		task, group int // an index into tasks or into o.Leaves; -1 for none
	}
	items := make([]item, 0, len(order)+len(o.Leaves))
	for _, i := range order {
		items = append(items, item{tasks[i].Seq, i, -1})
	}
	for k, l := range o.Leaves {
		items = append(items, item{l.First, -1, k})
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmpInt64(a.seq, b.seq) })

	nodeOf := make([]int, len(tasks)) // task index → node index
	groups := make(map[groupKey]int)
	counts := make([]map[string]int64, 0, 16)
	addNode := func(n Node) int {
		g.Nodes = append(g.Nodes, n)
		counts = append(counts, map[string]int64{})
		return len(g.Nodes) - 1
	}
	// groupNode is the collapsed node of name under parent's node, made
	// at seq, its first task, when it is not there yet.
	groupNode := func(parent int, seq int64, name, version string) int {
		k := groupKey{parent, name}
		n, ok := groups[k]
		if !ok {
			n = addNode(Node{Seq: seq, Name: name, Version: version, Group: true})
			groups[k] = n
		}
		return n
	}
	treeEdges := make(map[[2]int]bool)
	for _, it := range items {
		if it.group >= 0 {
			l := o.Leaves[it.group]
			pi, ok := bySeq[l.Parent]
			if !ok {
				continue
			}
			n := groupNode(nodeOf[pi], l.First, l.Name, "")
			g.Nodes[n].Count += l.Count
			counts[n][workflows.TaskComputed] += l.Count
			treeEdges[[2]int{nodeOf[pi], n}] = true
			continue
		}
		i := it.task
		t := tasks[i]
		pi, hasParent := bySeq[t.Parent]
		hasParent = hasParent && t.Parent != t.Seq
		var node int
		switch {
		case hasParent && (g.Nodes[nodeOf[pi]].Group || siblings[sibKey{t.Parent, t.Name}] > o.CollapseOver):
			node = groupNode(nodeOf[pi], t.Seq, t.Name, t.Version)
		default:
			node = addNode(Node{Seq: t.Seq, Name: t.Name, Version: t.Version, Display: t.Display,
				State: t.State, Error: firstLine(t.Error)})
		}
		nodeOf[i] = node
		g.Nodes[node].Count++
		counts[node][t.State]++
		if hasParent {
			treeEdges[[2]int{nodeOf[pi], node}] = true
		}
	}
	// Nodes were created in seq order of their first task, so indexes
	// already follow Seq.
	for i := range g.Nodes {
		n := &g.Nodes[i]
		for _, st := range workflows.TaskStates {
			if c := counts[i][st]; c > 0 {
				n.States = append(n.States, StateCount{st, c})
			}
		}
		if n.Group {
			n.State = ""
			for _, sc := range n.States {
				if notability[sc.State] > notability[n.State] {
					n.State = sc.State
				}
			}
		}
	}

	depEdges := make(map[[2]int]bool)
	for i, t := range tasks {
		for _, d := range t.Dependents {
			j, ok := bySeq[d]
			if !ok {
				continue
			}
			if from, to := nodeOf[i], nodeOf[j]; from != to {
				depEdges[[2]int{from, to}] = true
			}
		}
	}
	g.Edges = append(sortedEdges(treeEdges, Child), sortedEdges(depEdges, Dependency)...)
	g.layout()
	return g
}

func sortedEdges(set map[[2]int]bool, kind EdgeKind) []Edge {
	out := make([]Edge, 0, len(set))
	for e := range set {
		out = append(out, Edge{From: e[0], To: e[1], Kind: kind})
	}
	slices.SortFunc(out, func(a, b Edge) int {
		if a.From != b.From {
			return a.From - b.From
		}
		return a.To - b.To
	})
	return out
}

// Title is the node's first label line: "Render #0", "Tile ×20,000".
func (n Node) Title() string {
	if n.Group {
		return n.Name + " ×" + Commas(n.Count)
	}
	return n.Name + " #" + strconv.FormatInt(n.Seq, 10)
}

// Summary is the node's state line: "computed", or for a group
// "19,998 computed, 2 failed".
func (n Node) Summary() string {
	if !n.Group {
		return n.State
	}
	parts := make([]string, len(n.States))
	for i, sc := range n.States {
		parts[i] = Commas(sc.N) + " " + sc.State
	}
	return strings.Join(parts, ", ")
}

// Detail is the node's third line: a failed task's error, else its display
// name.
func (n Node) Detail() string {
	if n.Error != "" && n.State != workflows.TaskComputed {
		return n.Error
	}
	return n.Display
}

// Heading is the graph's title line.
func (g *Graph) Heading() string {
	return fmt.Sprintf("%s %s — %s, %s tasks", g.JobName, g.JobID, g.JobState, Commas(g.Tasks))
}

// ProgressLine is "tiles 12/20 · pages 3/3", or "" without progress.
func (g *Graph) ProgressLine() string {
	parts := make([]string, len(g.Progress))
	for i, p := range g.Progress {
		parts[i] = fmt.Sprintf("%s %s/%s", p.Label, Commas(p.Done), Commas(p.Total))
	}
	return strings.Join(parts, " · ")
}

// Commas formats n with thousands separators: 20000 → "20,000".
func Commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Label fills the nodes' version, display name and error from full task
// records, for a graph built from records read with only the fields the
// layout needs (queue.GraphTasks: a cheap read of every task of a big
// job). The layout depends on neither text (fixed node sizes), so the
// labelled graph is the one Build draws from full records. full needs to
// hold only the nodes' tasks (Nodes[i].Seq).
func (g *Graph) Label(full []workflows.TaskInfo) {
	bySeq := make(map[int64]workflows.TaskInfo, len(full))
	for _, t := range full {
		bySeq[t.Seq] = t
	}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		t, ok := bySeq[n.Seq]
		if !ok {
			continue
		}
		n.Version = t.Version
		if !n.Group {
			n.Display, n.Error = t.Display, firstLine(t.Error)
		}
	}
}

// NodeSeqs are the task ids of the graph's nodes, for Label.
func (g *Graph) NodeSeqs() []int64 {
	seqs := make([]int64, len(g.Nodes))
	for i, n := range g.Nodes {
		seqs[i] = n.Seq
	}
	return seqs
}

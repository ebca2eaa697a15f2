package jobgraph

import (
	"slices"
	"unicode/utf8"

	"github.com/runfleet/runfleet/workflows"
)

// Geometry, in pixels. Text is monospace at fixed sizes so a line's width is
// known without font metrics: labels are cut to fit.
const (
	nodeW     = 260
	nodeH     = 62
	bendW     = 14 // the slot a long edge takes in a layer it crosses
	gapX      = 28
	gapY      = 56
	margin    = 16
	headerH   = 64 // heading, progress and legend
	charW     = 7.3
	lineChars = 34 // (nodeW - padding) / charW
)

// slot is one thing in a layer: a node, or the bend of a long edge.
type slot struct {
	node  int     // index into Nodes, or -1 for a bend
	edge  int     // the edge a bend belongs to
	order float64 // mean column of what it hangs from
}

// layout puts every node on the layer after the deepest node it hangs from
// (parent or dependency), so dependencies read top to bottom. An edge
// crossing layers gets a bend slot in each, and each layer is ordered by the
// mean column of what its slots hang from (ties by seq), which keeps edges
// short and out of nodes. Then every node and bend gets its pixel position.
func (g *Graph) layout() {
	preds := make([][]int, len(g.Nodes))
	for _, e := range g.Edges {
		// Node indexes follow seq; an edge to a lower index (possible only
		// between collapsed groups) is drawn but not used for layering, which
		// keeps the layering acyclic.
		if e.From < e.To {
			preds[e.To] = append(preds[e.To], e.From)
		}
	}
	for i := range g.Nodes {
		layer := 0
		for _, p := range preds[i] {
			layer = max(layer, g.Nodes[p].Layer+1)
		}
		g.Nodes[i].Layer = layer
		g.Layers = max(g.Layers, layer+1)
	}

	// Each layer holds nodes and bends; slotPred links a slot to the slots
	// of the layer above that it hangs from.
	layers := make([][]*slot, g.Layers)
	nodeSlot := make([]*slot, len(g.Nodes))
	for i, n := range g.Nodes {
		s := &slot{node: i}
		nodeSlot[i] = s
		layers[n.Layer] = append(layers[n.Layer], s)
	}
	bends := make([][]*slot, len(g.Edges))
	slotPred := map[*slot][]*slot{}
	for ei, e := range g.Edges {
		from, to := g.Nodes[e.From], g.Nodes[e.To]
		if e.From > e.To || to.Layer <= from.Layer {
			continue
		}
		prev := nodeSlot[e.From]
		for l := from.Layer + 1; l < to.Layer; l++ {
			b := &slot{node: -1, edge: ei}
			layers[l] = append(layers[l], b)
			bends[ei] = append(bends[ei], b)
			slotPred[b] = []*slot{prev}
			prev = b
		}
		slotPred[nodeSlot[e.To]] = append(slotPred[nodeSlot[e.To]], prev)
	}

	column := map[*slot]int{}
	for _, ss := range layers {
		for _, s := range ss {
			ps := slotPred[s]
			if len(ps) == 0 {
				s.order = -1 // roots and orphans first
				continue
			}
			sum := 0
			for _, p := range ps {
				sum += column[p]
			}
			s.order = float64(sum) / float64(len(ps))
		}
		slices.SortStableFunc(ss, func(a, b *slot) int {
			switch {
			case a.order < b.order:
				return -1
			case a.order > b.order:
				return 1
			}
			return a.key(g) - b.key(g)
		})
		for col, s := range ss {
			column[s] = col
			if s.node >= 0 {
				g.Nodes[s.node].Column = col
			}
		}
	}

	// Pixels: every layer centred in the widest.
	widths := make([]int, len(layers))
	contentW := max(legendWidth(), int(float64(utf8.RuneCountInString(g.Heading()))*8.5),
		int(float64(utf8.RuneCountInString(g.ProgressLine()))*charW))
	for l, ss := range layers {
		for k, s := range ss {
			if k > 0 {
				widths[l] += gapX
			}
			widths[l] += s.width()
		}
		contentW = max(contentW, widths[l])
	}
	bendAt := map[*slot]Point{}
	for l, ss := range layers {
		x := margin + (contentW-widths[l])/2
		y := margin + headerH + l*(nodeH+gapY)
		for _, s := range ss {
			if s.node >= 0 {
				g.Nodes[s.node].X, g.Nodes[s.node].Y = x, y
			} else {
				bendAt[s] = Point{x + bendW/2, y}
			}
			x += s.width() + gapX
		}
	}
	for ei, bs := range bends {
		for _, b := range bs {
			g.Edges[ei].Bends = append(g.Edges[ei].Bends, bendAt[b])
		}
	}
	g.Width = contentW + 2*margin
	g.Height = headerH + 2*margin
	if g.Layers > 0 {
		g.Height += g.Layers*(nodeH+gapY) - gapY
	}
}

func (s *slot) width() int {
	if s.node >= 0 {
		return nodeW
	}
	return bendW
}

// key orders slots of equal weight: nodes by seq, bends after nodes by edge.
func (s *slot) key(g *Graph) int {
	if s.node >= 0 {
		return s.node
	}
	return len(g.Nodes) + s.edge
}

// The legend: a swatch per state, then the two kinds of arrow.
const legendChild, legendDependency = "subtask", "waits for"

func legendEntryWidth(label string) int { return 18 + int(float64(len(label))*charW) + 34 }
func legendArrowWidth(label string) int { return 36 + int(float64(len(label))*charW) + 22 }

func legendWidth() int {
	w := legendArrowWidth(legendChild) + legendArrowWidth(legendDependency)
	for _, st := range workflows.TaskStates {
		w += legendEntryWidth(st)
	}
	return w
}

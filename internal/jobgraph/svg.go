package jobgraph

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/runfleet/runfleet/workflows"
)

// Colour of each task state: the stroke, and a light fill behind the text.
var (
	stateStroke = map[string]string{
		workflows.TaskQueued: "#757575", workflows.TaskRunning: "#1e88e5", workflows.TaskComputed: "#43a047",
		workflows.TaskFailed: "#e53935", workflows.TaskSkipped: "#9e9e9e", workflows.TaskFailedOptional: "#fb8c00",
	}
	stateFill = map[string]string{
		workflows.TaskQueued: "#f5f5f5", workflows.TaskRunning: "#e3f2fd", workflows.TaskComputed: "#e8f5e9",
		workflows.TaskFailed: "#ffebee", workflows.TaskSkipped: "#fafafa", workflows.TaskFailedOptional: "#fff3e0",
	}
)

const unknownStroke, unknownFill = "#000000", "#ffffff"

func strokeOf(state string) string {
	if c, ok := stateStroke[state]; ok {
		return c
	}
	return unknownStroke
}

func fillOf(state string) string {
	if c, ok := stateFill[state]; ok {
		return c
	}
	return unknownFill
}

// Stacked cards behind a group, and its bar of states.
const (
	stackOff = 4
	barH     = 5
)

// WriteSVG writes the graph as a self-contained SVG document: inline styles,
// no fonts, scripts or links to fetch. All text is escaped.
func (g *Graph) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	width, height := g.Width, g.Height
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="monospace" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(bw, "<title>%s</title>\n", esc(g.Heading()))
	bw.WriteString(`<defs>` +
		`<marker id="arrow-child" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#9e9e9e"/></marker>` +
		`<marker id="arrow-dep" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#3949ab"/></marker>` +
		"</defs>\n")
	fmt.Fprintf(bw, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(bw, `<text x="%d" y="%d" font-size="14" font-weight="bold" fill="#212121">%s</text>`+"\n",
		margin, margin+14, esc(g.Heading()))
	if p := g.ProgressLine(); p != "" {
		fmt.Fprintf(bw, `<text x="%d" y="%d" fill="#424242">%s</text>`+"\n", margin, margin+32, esc(p))
	}
	g.writeLegend(bw, margin, margin+52)

	for _, n := range g.Nodes {
		x, y := n.X, n.Y
		stroke, fill := strokeOf(n.State), fillOf(n.State)
		fmt.Fprintf(bw, `<g><title>%s</title>`+"\n", esc(n.tooltip()))
		if n.Group { // a stack of cards
			for k := 2; k >= 1; k-- {
				fmt.Fprintf(bw, `<rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="%s"/>`+"\n",
					x+k*stackOff, y-k*stackOff, nodeW, nodeH, fill, stroke)
			}
		}
		fmt.Fprintf(bw, `<rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="%s" stroke-width="2"/>`+"\n",
			x, y, nodeW, nodeH, fill, stroke)
		fmt.Fprintf(bw, `<text x="%d" y="%d" font-weight="bold" fill="#212121">%s</text>`+"\n", x+8, y+17, esc(cut(n.Title())))
		fmt.Fprintf(bw, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", x+8, y+34, stroke, esc(cut(n.Summary())))
		if d := n.Detail(); d != "" {
			fmt.Fprintf(bw, `<text x="%d" y="%d" fill="#424242">%s</text>`+"\n", x+8, y+51, esc(cut(d)))
		}
		if n.Group {
			writeStateBar(bw, n, x+1, y+nodeH-barH-1, nodeW-2)
		}
		bw.WriteString("</g>\n")
	}
	// Edges go over the nodes, so arrowheads stay visible on a group's
	// stacked cards; the layout keeps them out of nodes' middles.
	for _, e := range g.Edges {
		style := `stroke="#9e9e9e" marker-end="url(#arrow-child)"`
		if e.Kind == Dependency {
			style = `stroke="#3949ab" stroke-dasharray="5,4" marker-end="url(#arrow-dep)"`
		}
		fmt.Fprintf(bw, `<path d="%s" fill="none" stroke-width="1.5" %s/>`+"\n", g.edgePath(e), style)
	}
	bw.WriteString("</svg>\n")
	return bw.Flush()
}

// writeStateBar draws a group's share of tasks per state as one bar.
func writeStateBar(w *bufio.Writer, n Node, x, y, width int) {
	var done int64
	for _, sc := range n.States {
		// Integer pixel edges, each segment at least 3 px wide, so 2
		// failures among 20,000 still show.
		x0 := x + int(int64(width)*done/n.Count)
		done += sc.N
		x1 := min(max(x+int(int64(width)*done/n.Count), x0+3), x+width)
		x0 = min(x0, x1-3)
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", x0, y, x1-x0, barH, strokeOf(sc.State))
	}
}

// edgePath runs from the bottom of the edge's source to the top of its
// target through its bends, as vertical lines joined by S-curves. An edge
// going back up bows out so it stays visible.
func (g *Graph) edgePath(e Edge) string {
	from, to := g.Nodes[e.From], g.Nodes[e.To]
	x, y := from.X+nodeW/2, from.Y+nodeH
	var b strings.Builder
	fmt.Fprintf(&b, "M%d,%d", x, y)
	curve := func(x2, y2 int) {
		bend := max((y2-y)/2, gapY/2)
		fmt.Fprintf(&b, " C%d,%d %d,%d %d,%d", x, y+bend, x2, y2-bend, x2, y2)
		x, y = x2, y2
	}
	for _, p := range e.Bends {
		curve(p.X, p.Y)
		y = p.Y + nodeH
		fmt.Fprintf(&b, " L%d,%d", x, y)
	}
	curve(to.X+nodeW/2, to.Y)
	return b.String()
}

func (g *Graph) writeLegend(w *bufio.Writer, x, y int) {
	for _, st := range workflows.TaskStates {
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="12" rx="2" fill="%s" stroke="%s" stroke-width="2"/>`+
			`<text x="%d" y="%d" fill="#424242">%s</text>`+"\n", x, y-10, fillOf(st), strokeOf(st), x+18, y, st)
		x += legendEntryWidth(st)
	}
	fmt.Fprintf(w, `<path d="M%d,%d h30" stroke="#9e9e9e" stroke-width="1.5" marker-end="url(#arrow-child)"/>`+
		`<text x="%d" y="%d" fill="#424242">%s</text>`+"\n", x, y-4, x+36, y, legendChild)
	x += legendArrowWidth(legendChild)
	fmt.Fprintf(w, `<path d="M%d,%d h30" stroke="#3949ab" stroke-width="1.5" stroke-dasharray="5,4" marker-end="url(#arrow-dep)"/>`+
		`<text x="%d" y="%d" fill="#424242">%s</text>`+"\n", x, y-4, x+36, y, legendDependency)
}

// tooltip is the full, uncut text of a node, shown on hover.
func (n Node) tooltip() string {
	s := n.Title() + " (" + n.Name + "@" + n.Version + "): " + n.Summary()
	if d := n.Detail(); d != "" {
		s += "\n" + d
	}
	return s
}

// cut keeps a label on one line of a node, ending it with … when too long.
func cut(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= lineChars {
		return s
	}
	r := []rune(s)
	return string(r[:lineChars-1]) + "…"
}

// esc makes text safe inside an XML element or a quoted attribute: markup
// characters become entities, and characters XML 1.0 forbids (controls,
// invalid UTF-8) become U+FFFD.
func esc(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&#39;")
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0xfffe || r == 0xffff:
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

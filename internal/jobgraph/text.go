package jobgraph

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/runfleet/runfleet/workflows"
)

// nodeID names a node in DOT and Mermaid: t<seq> for a task, g<seq> for a
// group, so ids stay stable when a job grows.
func (n Node) nodeID() string {
	if n.Group {
		return fmt.Sprintf("g%d", n.Seq)
	}
	return fmt.Sprintf("t%d", n.Seq)
}

// lines are a node's label lines, uncut: Graphviz and Mermaid size boxes
// themselves.
func (n Node) lines() []string {
	ls := []string{n.Title(), n.Summary()}
	if d := n.Detail(); d != "" {
		ls = append(ls, strings.Join(strings.Fields(d), " "))
	}
	return ls
}

// WriteDOT writes the graph for Graphviz (dot -Tsvg): boxes filled by state,
// dependencies dashed. Graphviz does its own layout.
func (g *Graph) WriteDOT(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("digraph job {\n")
	fmt.Fprintf(bw, "  label=%s;\n  labelloc=t;\n", dotQuote(g.Heading()+dotIf(g.ProgressLine())))
	bw.WriteString("  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=11];\n")
	for _, n := range g.Nodes {
		style := "rounded,filled"
		if n.Group {
			style = "rounded,filled,bold"
		}
		fmt.Fprintf(bw, "  %s [label=%s, color=%q, fillcolor=%q, style=%q];\n", n.nodeID(),
			dotQuote(strings.Join(n.lines(), "\n")), strokeOf(n.State), fillOf(n.State), style)
	}
	for _, e := range g.Edges {
		attrs := `color="#9e9e9e"`
		if e.Kind == Dependency {
			attrs = `color="#3949ab", style=dashed, constraint=true`
		}
		fmt.Fprintf(bw, "  %s -> %s [%s];\n", g.Nodes[e.From].nodeID(), g.Nodes[e.To].nodeID(), attrs)
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func dotIf(progress string) string {
	if progress == "" {
		return ""
	}
	return "\n" + progress
}

// dotQuote makes a DOT double-quoted string; newlines become centred line
// breaks and backslashes lose their escape meaning.
func dotQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WriteMermaid writes the graph as a Mermaid flowchart (flowchart TD), one
// class per task state; dependencies are dotted arrows.
func (g *Graph) WriteMermaid(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("flowchart TD\n")
	fmt.Fprintf(bw, "  %%%% %s\n", strings.Join(strings.Fields(g.Heading()+" "+g.ProgressLine()), " "))
	for _, n := range g.Nodes {
		ls := n.lines()
		for i, l := range ls {
			ls[i] = mermaidEscape(l)
		}
		fmt.Fprintf(bw, "  %s[\"%s\"]\n", n.nodeID(), strings.Join(ls, "<br/>"))
	}
	for _, e := range g.Edges {
		arrow := "-->"
		if e.Kind == Dependency {
			arrow = "-.->"
		}
		fmt.Fprintf(bw, "  %s %s %s\n", g.Nodes[e.From].nodeID(), arrow, g.Nodes[e.To].nodeID())
	}
	for _, st := range workflows.TaskStates {
		var ids []string
		for _, n := range g.Nodes {
			if n.State == st {
				ids = append(ids, n.nodeID())
			}
		}
		if len(ids) == 0 {
			continue
		}
		fmt.Fprintf(bw, "  classDef %s fill:%s,stroke:%s,stroke-width:2px\n", st, fillOf(st), strokeOf(st))
		fmt.Fprintf(bw, "  class %s %s\n", strings.Join(ids, ","), st)
	}
	return bw.Flush()
}

// mermaidEscape writes text for inside a quoted Mermaid label with its
// entity codes, so no user text can end the label or inject markup.
func mermaidEscape(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '#':
			b.WriteString("#35;")
		case r == '"':
			b.WriteString("#quot;")
		case r == '<':
			b.WriteString("#lt;")
		case r == '>':
			b.WriteString("#gt;")
		case r == '&':
			b.WriteString("#amp;")
		case r == '`':
			b.WriteString("#96;")
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

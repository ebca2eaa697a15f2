package benchtask

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/runfleet/runfleet/workflows"
)

// Traced does what a traced task does: it starts a span named Span (when
// set) from its context (see startSpan), logs Log (when
// set) to workflows.Logger in that span, submits Children, each in its
// Cluster (default the parent's) after the earlier children named in After,
// and fails with Fail when set. The trace tests build job trees with it.
type Traced struct {
	Span     string        `json:"span,omitempty"`
	Log      string        `json:"log,omitempty"`
	Fail     string        `json:"fail,omitempty"`
	Children []TracedChild `json:"children,omitempty"`
}

// TracedChild is a subtask of Traced.
type TracedChild struct {
	Cluster string `json:"cluster,omitempty"`
	After   []int  `json:"after,omitempty"` // indexes of earlier children
	Task    Traced `json:"task"`
}

func (*Traced) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Traced", Version)
}

func (t *Traced) Execute(ctx context.Context) error {
	if t.Span != "" {
		var end func()
		ctx, end = startSpan(ctx, t.Span)
		defer end()
	}
	if t.Log != "" {
		workflows.Logger(ctx).InfoContext(ctx, t.Log)
	}
	futures := make([]workflows.FutureTask, len(t.Children))
	for i, c := range t.Children {
		var opts []workflows.SubtaskOption
		if c.Cluster != "" {
			opts = append(opts, workflows.WithCluster(c.Cluster))
		}
		for _, a := range c.After {
			if a < 0 || a >= i {
				return errors.New("traced: a child may only come after earlier children")
			}
			opts = append(opts, workflows.WithDependencies(futures[a]))
		}
		task := c.Task
		f, err := workflows.SubmitSubtask(ctx, &task, opts...)
		if err != nil {
			return err
		}
		futures[i] = f
	}
	if t.Fail != "" {
		return errors.New(t.Fail)
	}
	return nil
}

// startSpan starts a child of ctx's span with the tracer provider of that
// span when it records (a runner's), else with OpenTelemetry's global one:
// a release worker's span is the runner's, known only by its ids, and the
// worker's own provider is the global one.
func startSpan(ctx context.Context, name string) (context.Context, func()) {
	tp := otel.GetTracerProvider()
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		tp = s.TracerProvider()
	}
	ctx, span := tp.Tracer("github.com/runfleet/runfleet/examples/bench").Start(ctx, name)
	return ctx, func() { span.End() }
}

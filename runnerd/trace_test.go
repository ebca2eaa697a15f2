package runnerd_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// tracedProcess is a runner process exporting to an OTLP receiver.
type tracedProcess struct {
	cmd *exec.Cmd
	log string
}

// startTraced starts bin with args and the OTLP environment (plus env),
// logging to a file; stop sends SIGTERM (the process flushes what it has
// not exported yet) and waits.
func startTraced(t *testing.T, name, bin string, env []string, args ...string) *tracedProcess {
	t.Helper()
	p := &tracedProcess{log: filepath.Join(t.TempDir(), name+".log")}
	out, err := os.Create(p.log)
	require.NoError(t, err)
	t.Cleanup(func() { _ = out.Close() })
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return p
}

func (p *tracedProcess) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// logMatch waits for re in the process's log and returns its submatches.
func (p *tracedProcess) logMatch(t *testing.T, re string) []string {
	t.Helper()
	var m [][]byte
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(p.log)
		m = regexp.MustCompile(re).FindSubmatch(b)
		return m != nil
	}, 60*time.Second, 10*time.Millisecond, "%q in %s", re, p.log)
	out := make([]string, len(m))
	for i, s := range m {
		out[i] = string(s)
	}
	return out
}

// A job's trace, exported by every process that worked on it into a real
// OpenTelemetry Collector, mirrors the job's tree: the submitter's span,
// the submit, the root execution on a direct runner process, a subtask
// executed by a release runner process whose worker process starts a span
// of its own, a grandchild back on the direct runner, and a subtask that
// depends on the first. Each span says which process made it (resource
// attributes), and task logs arrive with the span they were written in.
func TestTraceAcrossTwoRunnerProcessesAndAReleaseWorker(t *testing.T) {
	recv := testenv.NewOTLPReceiver(t)
	f := newFixture(t)
	_, err := f.client.Clusters().Create(f.ctx, "direct", "")
	require.NoError(t, err)
	rel := f.publish(t, "trace", nil)
	f.deploy(t, rel)
	otlpEnv := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint(),
		"OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_BLRP_SCHEDULE_DELAY=50"}

	released := startTraced(t, "runnerd", runnerdBinary(t), otlpEnv,
		"--cluster", f.cluster, "--redis", f.redis.URL(), "--store", "file://"+f.store.(*artifacts.FileStore).Root,
		"--cache-dir", t.TempDir(), "--concurrency", "4", "--grace", "5s")
	workerPID, _ := strconv.Atoi(released.logMatch(t, `msg="worker started".* pid=(\d+)`)[1])
	direct := startTraced(t, "direct", benchBinary(t, "trace"), append(otlpEnv, "OTEL_SERVICE_NAME=trace-direct"),
		"--cluster", "direct", "--redis", f.redis.URL(), "--concurrency", "4", "--grace", "5s")

	// The submitter traces too, into the same receiver.
	exp, err := otlptracehttp.New(f.ctx, otlptracehttp.WithEndpointURL(recv.Endpoint()+"/v1/traces"))
	require.NoError(t, err)
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("trace-test")))
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(workflows.TraceIDGenerator()))
	submitter, err := workflows.NewClient(f.ctx, workflows.WithRedisURL(f.redis.URL()), workflows.WithTracerProvider(tp))
	require.NoError(t, err)
	defer submitter.Close()

	tree := &benchtask.Traced{Span: "plan", Log: "planning", Children: []benchtask.TracedChild{
		{Cluster: f.cluster, Task: benchtask.Traced{Span: "render", Log: "rendering", Children: []benchtask.TracedChild{
			{Cluster: "direct", Task: benchtask.Traced{}}}}},
		{After: []int{0}, Task: benchtask.Traced{Span: "merge"}},
	}}
	ctx, caller := tp.Tracer("test").Start(f.ctx, "caller")
	var j workflows.Job
	require.Eventually(t, func() bool { // until the direct runner has registered
		j, err = submitter.Jobs().Submit(ctx, "traced", "direct", tree)
		return !errors.Is(err, workflows.ErrUnknownTask)
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, err)
	caller.End()
	require.Equal(t, workflows.JobCompleted, f.wait(t, j.ID).State)
	require.NoError(t, tp.Shutdown(f.ctx))
	released.stop()
	direct.stop()

	tid := caller.SpanContext().TraceID().String()
	spans := recv.WaitSpans(t, tid, 9, 30*time.Second)
	require.Len(t, spans, 9, "%v", spans)
	byTask := map[int64]testenv.Span{}
	byName := map[string]testenv.Span{}
	for _, s := range spans {
		if id, ok := s.Attributes["runfleet.task.id"].(int64); ok {
			require.Equal(t, "task/Traced", s.Name)
			require.Equal(t, "CONSUMER", s.Kind)
			byTask[id] = s
		} else {
			byName[s.Name] = s
		}
	}
	require.Len(t, byTask, 4)
	submit := byName["submit traced"]
	require.Equal(t, "PRODUCER", submit.Kind)
	require.Equal(t, caller.SpanContext().SpanID().String(), submit.ParentSpanID)
	require.Equal(t, "trace-test", submit.Resource["service.name"])

	parents := map[int64]string{0: submit.SpanID, 1: byTask[0].SpanID, 2: byTask[0].SpanID, 3: byTask[1].SpanID}
	clusters := map[int64]string{0: "direct", 1: f.cluster, 2: "direct", 3: "direct"}
	host, _ := os.Hostname()
	for seq, s := range byTask {
		require.Equal(t, parents[seq], s.ParentSpanID, "parent of task %d", seq)
		require.Equal(t, j.ID, s.Attributes["runfleet.job.id"])
		require.Equal(t, int64(1), s.Attributes["runfleet.task.attempt"])
		require.Equal(t, clusters[seq], s.Attributes["runfleet.cluster"])
		require.Equal(t, "runfleet", s.Attributes["messaging.system"])
		require.Contains(t, s.Attributes["messaging.destination.name"], "{c:"+clusters[seq]+"}")
		require.NotEmpty(t, s.Attributes["messaging.message.id"])
		require.NotContains(t, s.Attributes, "runfleet.task.outcome")
		require.Equal(t, "UNSET", s.Status)
		// The runner is the service instance that made the span.
		require.Equal(t, s.Attributes["runfleet.runner.id"], s.Resource["service.instance.id"])
		require.Equal(t, host, s.Resource["host.name"])
		require.Equal(t, "linux", s.Resource["os.type"])
		require.NotEmpty(t, s.Resource["host.arch"])
		if seq == 1 {
			continue
		}
		require.Equal(t, int64(direct.cmd.Process.Pid), s.Resource["process.pid"], "task %d", seq)
		require.Equal(t, "trace-direct", s.Resource["service.name"], "OTEL_SERVICE_NAME names it")
	}
	released1 := byTask[1]
	require.Equal(t, int64(released.cmd.Process.Pid), released1.Resource["process.pid"])
	require.Equal(t, "runfleet-runner", released1.Resource["service.name"])
	require.Equal(t, rel.ID, released1.Attributes["runfleet.release"])

	for name, under := range map[string]int64{"plan": 0, "render": 1, "merge": 2} {
		s, ok := byName[name]
		require.True(t, ok, "span %s", name)
		require.Equal(t, "INTERNAL", s.Kind)
		require.Equal(t, byTask[under].SpanID, s.ParentSpanID, "%s is under task %d", name, under)
	}
	render := byName["render"]
	require.Equal(t, int64(workerPID), render.Resource["process.pid"], "the release worker made it")
	require.Equal(t, "runfleet-worker", render.Resource["service.name"])
	require.False(t, byTask[2].Start.Before(byTask[3].End), "the merge waited for the render's whole subtree")

	// Task logs reach the backend in their spans, exported by the runner
	// that ran the task (a release worker's through its runner).
	logs := recv.WaitLogs(t, tid, 2, 30*time.Second)
	bySpan := map[string]testenv.OTLPLogRecord{}
	for _, l := range logs {
		bySpan[l.Body] = l
	}
	require.Equal(t, byName["plan"].SpanID, bySpan["planning"].SpanID, "%+v", logs)
	require.Equal(t, "trace-direct", bySpan["planning"].Resource["service.name"])
	require.Equal(t, render.SpanID, bySpan["rendering"].SpanID, "%+v", logs)
	require.Equal(t, "runfleet-runner", bySpan["rendering"].Resource["service.name"])
	require.Equal(t, j.ID, bySpan["rendering"].Attributes["job_id"])
}

package protocol

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/rftype"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	x := Execute{Type: TypeExecute, ID: 7, JobID: "j1", TaskID: 3, Attempt: 2, Task: rftype.TaskIdentifier{Name: "Resize", Version: "v1.2"},
		Input: []byte(`{"w":640}`)}
	require.NoError(t, WriteFrame(&buf, x))
	require.NoError(t, WriteFrame(&buf, Cancel{Type: TypeCancel, ID: 7}))
	typ, body, err := ReadFrame(&buf)
	require.NoError(t, err)
	require.Equal(t, TypeExecute, typ)
	require.JSONEq(t, `{"type":"execute","id":7,"job_id":"j1","task_id":3,"attempt":2,"cluster":"","runner_id":"","task":{"name":"Resize","version":"v1.2"},"input":{"w":640}}`, string(body))
	typ, _, err = ReadFrame(&buf)
	require.NoError(t, err)
	require.Equal(t, TypeCancel, typ)
	_, _, err = ReadFrame(&buf)
	require.ErrorIs(t, err, io.EOF, "a clean end between frames is io.EOF")
}

func TestReadFrameRefusesBadFrames(t *testing.T) {
	frame := func(n uint32, body string) *bytes.Reader {
		b := binary.BigEndian.AppendUint32(nil, n)
		return bytes.NewReader(append(b, body...))
	}
	_, _, err := ReadFrame(frame(0, ""))
	require.ErrorIs(t, err, ErrFrameSize)
	_, _, err = ReadFrame(frame(MaxFrame+1, ""))
	require.ErrorIs(t, err, ErrFrameSize)
	_, _, err = ReadFrame(frame(10, `{"type"`))
	require.ErrorContains(t, err, "inside a 10-byte frame")
	_, _, err = ReadFrame(bytes.NewReader([]byte{0, 0}))
	require.ErrorContains(t, err, "inside a frame header")
	_, _, err = ReadFrame(frame(2, `[]`))
	require.ErrorContains(t, err, "not a JSON object")
	_, _, err = ReadFrame(frame(2, `{}`))
	require.ErrorContains(t, err, "no type")
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, Result{Type: TypeResult, ID: 1, Error: "x", Subtasks: []Subtask{{Task: rftype.TaskIdentifier{Name: "A", Version: "v1.0"}, Input: []byte(`{}`), Deps: []int{0}}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			typ, body, err := ReadFrame(r)
			if err != nil {
				return
			}
			if typ == "" || len(body) == 0 || len(body) > MaxFrame {
				t.Fatalf("accepted frame with type %q and %d bytes", typ, len(body))
			}
		}
	})
}

// pipePair connects a Host to a hand-driven worker end.
func pipePair(t *testing.T) (toWorker *io.PipeReader, fromWorker *io.PipeWriter, hostIn *io.PipeReader, hostOut *io.PipeWriter) {
	toWorker, hostOut = io.Pipe()
	hostIn, fromWorker = io.Pipe()
	return
}

func TestHostMatchesResultsAndReportsAGoneWorker(t *testing.T) {
	toWorker, fromWorker, hostIn, hostOut := pipePair(t)
	go func() {
		_ = WriteFrame(fromWorker, Hello{Type: TypeHello, Protocol: Version, Tasks: []rftype.TaskIdentifier{{Name: "A", Version: "v1.0"}}})
	}()
	h, hello, err := NewHost(hostIn, hostOut, time.Second)
	require.NoError(t, err)
	require.Equal(t, []rftype.TaskIdentifier{{Name: "A", Version: "v1.0"}}, hello.Tasks)

	// The worker answers two executions in reverse order.
	go func() {
		var ids []uint64
		for range 2 {
			_, body, err := ReadFrame(toWorker)
			if err != nil {
				return
			}
			var x Execute
			_ = jsonUnmarshal(body, &x)
			ids = append(ids, x.ID)
		}
		_ = WriteFrame(fromWorker, Result{Type: TypeResult, ID: ids[1], Display: "second"})
		_ = WriteFrame(fromWorker, Result{Type: TypeResult, ID: ids[0], Display: "first"})
	}()
	type got struct {
		r   Result
		err error
	}
	a, b := make(chan got, 1), make(chan got, 1)
	go func() { r, err := h.Execute(context.Background(), Execute{JobID: "a"}); a <- got{r, err} }()
	time.Sleep(10 * time.Millisecond) // order the two sends
	go func() { r, err := h.Execute(context.Background(), Execute{JobID: "b"}); b <- got{r, err} }()
	ra, rb := <-a, <-b
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	require.Equal(t, "first", ra.r.Display)
	require.Equal(t, "second", rb.r.Display)

	// An execution outstanding when the worker goes away fails with
	// ErrWorkerGone, as does every later one.
	c := make(chan got, 1)
	go func() { r, err := h.Execute(context.Background(), Execute{JobID: "c"}); c <- got{r, err} }()
	_, _, err = ReadFrame(toWorker)
	require.NoError(t, err)
	require.NoError(t, fromWorker.Close())
	rc := <-c
	require.ErrorIs(t, rc.err, ErrWorkerGone)
	_, err = h.Execute(context.Background(), Execute{})
	require.ErrorIs(t, err, ErrWorkerGone)
	<-h.Done()
}

func TestHostRefusesWrongHello(t *testing.T) {
	_, fromWorker, hostIn, hostOut := pipePair(t)
	go func() { _ = WriteFrame(fromWorker, Hello{Type: TypeHello, Protocol: 9}) }()
	_, _, err := NewHost(hostIn, hostOut, time.Second)
	require.ErrorContains(t, err, "protocol version 9")

	_, _, hostIn, hostOut = pipePair(t)
	_, _, err = NewHost(hostIn, hostOut, 20*time.Millisecond)
	require.ErrorContains(t, err, "did not say hello")
	require.False(t, errors.Is(err, ErrWorkerGone))
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// The execute message names the execution's devices, and leaves the field
// out without them, so workers that predate it see the same messages.
func TestExecuteCarriesDevices(t *testing.T) {
	x := Execute{Type: TypeExecute, ID: 1, Task: rftype.TaskIdentifier{Name: "Train", Version: "v1.0"}, Input: json.RawMessage(`{}`),
		Devices: []rftype.Device{{Index: 2, UUID: "GPU-2", Name: "NVIDIA A100-SXM4-80GB", MemoryMiB: 81920}}}
	b, err := json.Marshal(x)
	require.NoError(t, err)
	require.Contains(t, string(b), `"devices":[{"index":2,"uuid":"GPU-2","name":"NVIDIA A100-SXM4-80GB","memory_mib":81920}]`)
	var back Execute
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, x.Devices, back.Devices)

	x.Devices = nil
	b, err = json.Marshal(x)
	require.NoError(t, err)
	require.NotContains(t, string(b), "devices")
}

// An execution whose worker ignores the cancel is given up on after
// CancelWait with an AbandonedError whose Gone stays open while the worker
// may still run it (its device must stay reserved), and closes once the
// worker is gone.
func TestAbandonedExecutionReportsWhenItsWorkerIsGone(t *testing.T) {
	toWorker, fromWorker, hostIn, hostOut := pipePair(t)
	go func() { _ = WriteFrame(fromWorker, Hello{Type: TypeHello, Protocol: Version}) }()
	h, _, err := NewHost(hostIn, hostOut, time.Second)
	require.NoError(t, err)
	cancels := make(chan string, 2)
	go func() {
		for {
			typ, _, err := ReadFrame(toWorker)
			if err != nil {
				return
			}
			cancels <- typ // read and never answered
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = h.Execute(ctx, Execute{JobID: "a"})
	require.Equal(t, TypeExecute, <-cancels)
	require.Equal(t, TypeCancel, <-cancels)
	var ab *AbandonedError
	require.ErrorAs(t, err, &ab)
	require.ErrorIs(t, err, context.Canceled)
	require.EqualError(t, err, "worker did not answer within 2s of being asked to cancel: context canceled")
	require.True(t, h.Abandoned())
	select {
	case <-ab.Gone():
		t.Fatal("Gone closed while the worker still runs")
	default:
	}
	require.NoError(t, fromWorker.Close())
	select {
	case <-ab.Gone():
	case <-time.After(10 * time.Second):
		t.Fatal("Gone not closed after the worker's output ended")
	}
}

// Log messages reach the OnLog of their execution, before its result;
// those of an execution without OnLog, or of an id nobody waits for, are
// dropped and the conversation goes on. Without OnLog the worker is not
// asked for logs, so workers that predate log messages see the same
// execute messages.
func TestHostDeliversLogMessages(t *testing.T) {
	toWorker, fromWorker, hostIn, hostOut := pipePair(t)
	go func() { _ = WriteFrame(fromWorker, Hello{Type: TypeHello, Protocol: Version}) }()
	h, _, err := NewHost(hostIn, hostOut, time.Second)
	require.NoError(t, err)
	asked := make(chan Execute, 2)
	go func() {
		for {
			_, body, err := ReadFrame(toWorker)
			if err != nil {
				return
			}
			var x Execute
			_ = jsonUnmarshal(body, &x)
			asked <- x
			at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
			_ = WriteFrame(fromWorker, Log{Type: TypeLog, ID: x.ID + 100, Records: []LogRecord{{Time: at, Level: "INFO", Message: "stray"}}})
			_ = WriteFrame(fromWorker, Log{Type: TypeLog, ID: x.ID, Records: []LogRecord{
				{Time: at, Level: "INFO", Message: "one", Attrs: map[string]any{"n": 1}},
				{Time: at, Level: "WARN", Message: "two", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"}}})
			_ = WriteFrame(fromWorker, Result{Type: TypeResult, ID: x.ID})
		}
	}()
	var got []LogRecord
	_, err = h.Execute(context.Background(), Execute{JobID: "a", Logs: "INFO", OnLog: func(recs []LogRecord) {
		got = append(got, recs...)
	}})
	require.NoError(t, err)
	x := <-asked
	require.Equal(t, "INFO", x.Logs)
	require.Len(t, got, 2, "records arrive before the result")
	require.Equal(t, "one", got[0].Message)
	require.Equal(t, map[string]any{"n": float64(1)}, got[0].Attrs)
	require.Equal(t, "WARN", got[1].Level)
	require.Equal(t, "00f067aa0ba902b7", got[1].SpanID)

	_, err = h.Execute(context.Background(), Execute{JobID: "b", Logs: "INFO"})
	require.NoError(t, err, "records nobody takes are dropped")
	require.Empty(t, (<-asked).Logs, "no OnLog: the worker is not asked for records")
	b, err := json.Marshal(Execute{Logs: "", OnLog: func([]LogRecord) {}})
	require.NoError(t, err)
	require.NotContains(t, string(b), "logs")
	require.NotContains(t, string(b), "OnLog")
}

// Package protocol is the worker protocol between a release runner (runnerd)
// and the worker processes it starts, one per deployed release. The Go SDK
// implements the worker side (workflows.ServeReleaseModes), but a worker can
// be written in any language that can read and write a pipe: this comment is
// the specification.
//
// # Modes
//
// runnerd runs a release's entrypoint with RUNFLEET_MODE in its environment:
//
//   - RUNFLEET_MODE=describe: the program writes one JSON object, a
//     [Describe], to standard output and exits 0. It connects to nothing.
//     `runfleet workflow build` records this output in the manifest.
//   - RUNFLEET_MODE=worker: the program serves tasks over the two pipes
//     below until its input pipe is closed, then exits 0.
//
// Without RUNFLEET_MODE the program is free to do anything else; a Go release
// binary is usually also a direct runner.
//
// # Pipes and framing
//
// In worker mode the worker reads messages from file descriptor 3 and writes
// messages to file descriptor 4. Standard output and standard error are free
// for logs, which runnerd forwards line by line, so a task that prints cannot
// corrupt the protocol. Every message is a frame: a 4-byte big-endian length
// N (1 ≤ N ≤ MaxFrame), then N bytes of one JSON object with a "type" field.
// Unknown fields must be ignored; unknown message types are an error.
//
// # Conversation
//
//  1. The worker sends a [Hello]: the protocol version it speaks and the task
//     identifiers it serves (the same list describe mode prints). runnerd
//     refuses the worker if they differ from the release manifest.
//  2. runnerd sends [Execute] messages, each with an id unique within the
//     worker process. The worker may run any number at once and must answer
//     each with exactly one [Result] carrying the same id, in any order.
//  3. runnerd may send [Cancel] for an id still running (its runner is
//     stopping): the worker should interrupt the task and still answer with a
//     Result (usually an error). runnerd hands interrupted tasks back to the
//     queue; it never counts them as failures.
//  4. When runnerd has no more work for the worker it closes the worker's
//     input pipe (fd 3). The worker finishes what it runs, sends those
//     results and exits 0. A worker that exits while executions are
//     outstanding has crashed: runnerd queues those tasks again (counted as
//     a lost runner, so a task that kills its worker every time fails after
//     its 11th loss) and starts the worker again with backoff.
//
// # Logs
//
// An Execute with "logs": "INFO" (or another level) asks the worker to send
// the execution's log records of that level and above
// (workflows.Logger(ctx) in the Go SDK) as [Log] messages carrying the
// execution's id, any number of them, each before the Result: runnerd
// stores them with the job (`runfleet job logs`) and writes them to its own
// log. Without it (a runnerd older than log messages, or one that wants
// none) the worker sends none and logs to its standard error instead. Records of an id that already has
// its Result are dropped. A record's message and its attributes are each
// kept up to 16 KiB; runnerd cuts longer ones.
//
// # Traces
//
// A runner that traces (OpenTelemetry) sends each Execute with
// "traceparent": the W3C traceparent of its span of the execution. A worker
// that traces too makes the spans it starts for the task children of that
// span, and puts its trace and span ids on the task's log records, so the
// worker's work shows in the job's trace. A worker may ignore the field.
//
// # Task identifiers
//
// A task identifier travels as a JSON object {"name": "Resize", "version":
// "v1.2"} (rftype.TaskIdentifier): a name of 1 to 256 bytes and a
// vMAJOR.MINOR version. A worker serving v1.5 of a task may be sent
// executions of v1.3, never of v1.2 or v2.0.
//
// # Devices
//
// A runner started with GPUs (runnerd --gpus) hands each execution one
// device and names it in the Execute message's "devices" array (index,
// uuid, name, memory_mib); without GPUs the field is absent. runnerd hands
// that device to no other execution until the Result arrives, so a worker
// that starts processes for a task sets their CUDA_VISIBLE_DEVICES to the
// devices' UUIDs (indexes where a UUID is empty), comma-separated; the Go
// SDK exposes them as workflows.CurrentTask(ctx).Devices and
// workflows.CUDAVisibleDevices.
//
// # Job cache
//
// An Execute's "cache" field says where the execution's job cache
// (workflows.JobCache) lives. An object store URL (s3://..., file:///...):
// the worker opens that store itself, with the credentials of the
// environment runnerd passed on, and keeps keys under
// cache/<job id>/ in it. "runner": the cache is the runner's Redis, which
// the worker does not reach; it sends a [CacheRequest] per operation, with
// the execution's id and a request id, and runnerd answers each with a
// [CacheReply] carrying that request id, in any order, while the execution
// runs (values up to MaxCacheValue). Absent (an older runnerd): the
// execution has no cache. runnerd checks every key as the SDK does; a worker
// never sends Cache messages for an Execute without "cache": "runner", so
// older runners never see them.
//
// A Result must fit in one frame: a worker whose result is larger answers
// with an error Result instead (the Go SDK does), failing that execution.
//
// A task's subtasks, progress and display text travel in its Result and are
// committed by runnerd together with the result, atomically, as for a
// direct runner: a failed execution commits none of its subtasks.
package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/runfleet/runfleet/rftype"
)

// Version is the protocol version this package speaks.
const Version = 1

// ModeEnv is the environment variable that selects a release binary's mode.
const ModeEnv = "RUNFLEET_MODE"

// Mode values of ModeEnv.
const (
	ModeDescribe = "describe"
	ModeWorker   = "worker"
)

// Worker pipe file descriptors, as seen by the worker process.
const (
	WorkerInFD  = 3
	WorkerOutFD = 4
)

// MaxFrame bounds one message: 64 MiB, above any task input or result
// runfleet accepts, so a corrupt length cannot make a reader allocate
// gigabytes.
const MaxFrame = 64 << 20

// Message types.
const (
	TypeHello   = "hello"
	TypeExecute = "execute"
	TypeCancel  = "cancel"
	TypeResult  = "result"
	TypeLog     = "log"
	// The job cache proxy (see "Job cache" above).
	TypeCache      = "cache"
	TypeCacheReply = "cache_reply"
)

// CacheViaRunner is the Execute "cache" value that sends the execution's
// job cache requests to the release runner as Cache messages.
const CacheViaRunner = "runner"

// MaxCacheValue is the largest value a Cache message carries: the runner's
// Redis cache holds no larger ones.
const MaxCacheValue = 1 << 20

// Describe is what a release binary prints in describe mode.
type Describe struct {
	Protocol int                     `json:"protocol"`
	Tasks    []rftype.TaskIdentifier `json:"tasks"`
}

// Hello is the worker's first message.
type Hello struct {
	Type     string                  `json:"type"` // "hello"
	Protocol int                     `json:"protocol"`
	Tasks    []rftype.TaskIdentifier `json:"tasks"`
}

// Execute asks the worker to run one task execution.
type Execute struct {
	Type     string                `json:"type"` // "execute"
	ID       uint64                `json:"id"`
	JobID    string                `json:"job_id"`
	TaskID   int64                 `json:"task_id"`
	Attempt  int                   `json:"attempt"`
	Cluster  string                `json:"cluster"`
	RunnerID string                `json:"runner_id"`
	Release  string                `json:"release,omitempty"`
	Task     rftype.TaskIdentifier `json:"task"`
	Input    json.RawMessage       `json:"input"`
	// InputPayload, when set, is the task's real input: kept in the payload
	// store named by Payloads, which the worker fetches and checks (SHA-256
	// and size) before it runs the task; the task fails if it cannot. Input
	// is then an object with the one field "$runfleet_input_payload", which
	// a worker that predates stored inputs refuses to decode.
	InputPayload *PayloadRef `json:"input_payload,omitempty"`
	// Payloads is the payload store (an object store URL) of stored inputs:
	// the worker fetches InputPayload from it and may upload subtask inputs
	// larger than InlineInput to it, at payloads/<job id>/<sha256 hex>,
	// sending their references (Subtask.InputPayload). Empty: no store, so
	// subtask inputs above InlineInput fail the execution.
	Payloads string `json:"payloads,omitempty"`
	// InlineInput is the largest subtask input sent inline (0: 64 KiB).
	InlineInput int `json:"inline_input,omitempty"`
	// MaxInput is the largest subtask input the runner takes, inline or
	// stored (0: 256 MiB); the worker refuses larger ones before uploading.
	MaxInput int `json:"max_input,omitempty"`
	// Devices are the GPUs the execution may use: exactly one when the
	// runner was started with --gpus, else none (the field is left out).
	// No other execution uses them until this one's Result is sent. A worker
	// starting processes for the task sets their CUDA_VISIBLE_DEVICES to the
	// devices' UUIDs (their indexes where the UUID is empty), comma-separated.
	Devices []rftype.Device `json:"devices,omitempty"`
	// Logs, when set, asks the worker to send the execution's log records
	// of this level and above ("DEBUG", "INFO", "WARN" or "ERROR") as Log
	// messages. Empty: send none. Host.Execute sends it only with OnLog.
	Logs string `json:"logs,omitempty"`
	// OnLog receives the execution's log records as they arrive, on the
	// Host's read goroutine, so it must not block. Not sent.
	OnLog func([]LogRecord) `json:"-"`
	// TraceParent is the W3C traceparent of the runner's span of this
	// execution, when the runner traces (OpenTelemetry): spans the worker
	// starts for the task are its children. Empty otherwise.
	TraceParent string `json:"traceparent,omitempty"`
	// Cache is where the execution's job cache lives: an object store URL
	// (s3://bucket/prefix?endpoint=..., file:///dir) the worker opens
	// itself, CacheViaRunner, or empty when the runner has none.
	Cache string `json:"cache,omitempty"`
	// OnCache answers the execution's Cache requests, on a goroutine of
	// its own per request. Not sent; Host.Execute answers every request
	// with an error without it.
	OnCache func(CacheRequest) CacheReply `json:"-"`
}

// Cache operations of a CacheRequest.
const (
	CachePut    = "put"
	CacheGet    = "get"
	CacheExists = "exists"
	CacheDelete = "delete"
	CacheKeys   = "keys"
)

// Error codes of a CacheReply, which the worker maps to its SDK's errors.
const (
	CacheErrMiss       = "miss"        // get: the key has no value
	CacheErrInvalidKey = "invalid_key" // the key breaks a rule (Error says which)
	CacheErrTooLarge   = "too_large"   // put: the value is over the cache's limit
)

// CacheRequest is a job cache operation of execution ID, sent by the worker
// while the execution runs, for an Execute with "cache": "runner".
type CacheRequest struct {
	Type string `json:"type"` // "cache"
	ID   uint64 `json:"id"`   // the execution's id
	// Req is unique among the worker's requests in flight; the reply
	// carries it.
	Req uint64 `json:"req"`
	Op  string `json:"op"` // put, get, exists, delete or keys
	// Key is the full key (a group's keys are "<group>/<key>"); for keys,
	// the prefix to list ("" for all).
	Key string `json:"key"`
	// Value is put's value (base64 in JSON), at most MaxCacheValue bytes.
	Value []byte `json:"value,omitempty"`
	// After asks keys for the keys sorting after it: the previous page's
	// last key.
	After string `json:"after,omitempty"`
}

// CacheReply answers a CacheRequest.
type CacheReply struct {
	Type  string `json:"type"` // "cache_reply"
	Req   uint64 `json:"req"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`  // one of the CacheErr codes, or empty
	Value []byte `json:"value,omitempty"` // get
	Found bool   `json:"found,omitempty"` // get, exists
	// Keys is one page of keys, sorted; More says a later page exists.
	Keys []string `json:"keys,omitempty"`
	More bool     `json:"more,omitempty"`
}

// Log carries log records of execution ID, oldest first. A worker sends it
// only for an Execute with "logs" set.
type Log struct {
	Type    string      `json:"type"` // "log"
	ID      uint64      `json:"id"`
	Records []LogRecord `json:"records"`
}

// LogRecord is one log record of an execution.
type LogRecord struct {
	Time time.Time `json:"time"`
	// Level is DEBUG, INFO, WARN or ERROR, optionally with an offset
	// (INFO+2), as log/slog writes levels.
	Level   string `json:"level"`
	Message string `json:"msg"`
	// Attrs are the record's attributes; groups are nested objects.
	Attrs map[string]any `json:"attrs,omitempty"`
	// TraceID and SpanID name the OpenTelemetry span the record was
	// written in, as lowercase hex; empty outside one.
	TraceID string `json:"trace_id,omitempty"`
	SpanID  string `json:"span_id,omitempty"`
	// Truncated says the worker already shortened the record.
	Truncated bool `json:"truncated,omitempty"`
}

// Cancel asks the worker to interrupt execution ID.
type Cancel struct {
	Type string `json:"type"` // "cancel"
	ID   uint64 `json:"id"`
}

// Result answers an Execute. An empty Error means Execute returned nil.
type Result struct {
	Type  string `json:"type"` // "result"
	ID    uint64 `json:"id"`
	Error string `json:"error,omitempty"`
	// Stack is the goroutine stack when the task panicked (Error then
	// names the panic's value); kept with the attempt.
	Stack    string     `json:"stack,omitempty"`
	Subtasks []Subtask  `json:"subtasks,omitempty"`
	Progress []Progress `json:"progress,omitempty"`
	Display  string     `json:"display,omitempty"`
}

// Subtask is a subtask submitted by an execution, committed only if the
// execution succeeds.
type Subtask struct {
	Task rftype.TaskIdentifier `json:"task"`
	// Cluster is the subtask's cluster; empty means the parent's.
	Cluster string          `json:"cluster,omitempty"`
	Input   json.RawMessage `json:"input"`
	// InputPayload, instead of Input, is an input the worker uploaded to
	// Execute.Payloads (Input is then null).
	InputPayload *PayloadRef `json:"input_payload,omitempty"`
	MaxRetries   int         `json:"max_retries,omitempty"`
	Optional     bool        `json:"optional,omitempty"`
	// Deps are indexes of earlier subtasks of the same Result.
	Deps []int `json:"deps,omitempty"`
}

// PayloadRef names a task input kept in the payload store by its content.
type PayloadRef struct {
	SHA256 string `json:"sha256"` // lower-case hex
	Bytes  int64  `json:"bytes"`
}

// Progress is an execution's count under one job-wide progress label.
type Progress struct {
	Label string `json:"label"`
	Add   int64  `json:"add"`
	Done  int64  `json:"done"`
}

// ErrFrameSize is returned for a frame length of 0 or above MaxFrame.
var ErrFrameSize = errors.New("worker protocol: frame length out of range")

// WriteFrame writes v as one frame. Callers serialise writes themselves.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("worker protocol: encode message: %w", err)
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("%w: message of %d bytes", ErrFrameSize, len(b))
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame and returns its JSON and message type. It
// returns io.EOF only when the stream ends cleanly between frames.
func ReadFrame(r io.Reader) (typ string, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return "", nil, fmt.Errorf("worker protocol: stream ended inside a frame header")
		}
		return "", nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxFrame {
		return "", nil, fmt.Errorf("%w: %d bytes", ErrFrameSize, n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", nil, fmt.Errorf("worker protocol: stream ended inside a %d-byte frame: %w", n, err)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return "", nil, fmt.Errorf("worker protocol: frame is not a JSON object: %w", err)
	}
	if head.Type == "" {
		return "", nil, errors.New("worker protocol: message has no type")
	}
	return head.Type, body, nil
}

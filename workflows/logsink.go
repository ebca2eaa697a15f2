package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/runfleet/runfleet/queue"
)

// How a run's log sink batches stored task records.
const (
	// logFlushEvery is the longest a record waits in the sink.
	logFlushEvery = 100 * time.Millisecond
	// logBatchRecords waiting records make the sink write at once.
	logBatchRecords = 512
	// logBufferBytes bounds what waits: records past it are dropped (and
	// counted) rather than making a task wait for Redis.
	logBufferBytes = 8 << 20
	// logWriteTimeout bounds one write of a batch.
	logWriteTimeout = 5 * time.Second
	// logWarnEvery spaces the sink's warnings while Redis fails.
	logWarnEvery = 30 * time.Second
)

// logSink batches the stored task records of one run and writes them to
// Redis (queue.AppendLogs, one round trip per batch) off the executors'
// path: every logFlushEvery, as soon as logBatchRecords wait, and when the
// run stops. It never blocks a task: with logBufferBytes waiting already,
// records are dropped and counted, and one marker record per execution
// says how many were lost. A run whose tasks log nothing sends nothing.
type logSink struct {
	q      *queue.Queue
	runner string
	perJob int
	logger *slog.Logger

	mu       sync.Mutex
	pending  []pendingLog
	bytes    int
	dropped  map[dropKey]int
	closed   bool
	failures int       // writes that failed since the last warning
	warned   time.Time // when the last warning was logged

	flushing sync.Mutex // one flush at a time, so a job's records keep their order

	wake chan struct{} // buffered: a full batch waits
	stop chan struct{}
	done chan struct{}
}

type pendingLog struct {
	job string
	rec queue.LogRecord
}

// dropKey names one execution in the sink's drop counts.
type dropKey struct {
	job     string
	task    int64
	name    string
	attempt int
	runner  string
}

func startLogSink(q *queue.Queue, runner string, perJob int, logger *slog.Logger) *logSink {
	s := &logSink{q: q, runner: runner, perJob: perJob, logger: logger,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// add queues a record of job whose text takes size bytes, or counts it as
// dropped when the buffer is full or the run has stopped.
func (s *logSink) add(job string, rec queue.LogRecord, size int) {
	size += 256 // the record's other fields, roughly
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.bytes+size > logBufferBytes {
		if s.dropped == nil {
			s.dropped = map[dropKey]int{}
		}
		s.dropped[dropKey{job, rec.TaskID, rec.Task, rec.Attempt, rec.Runner}]++
		return
	}
	s.pending = append(s.pending, pendingLog{job, rec})
	s.bytes += size
	if len(s.pending) >= logBatchRecords {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *logSink) loop() {
	defer close(s.done)
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.wake:
		case <-s.stop:
			s.flush()
			return
		}
		s.flush()
	}
}

// flushPending writes what waits now, if anything does: the completer
// calls it before committing results, so that once a job is seen finished
// its tasks' records are stored too. A batch whose tasks logged nothing
// costs nothing.
func (s *logSink) flushPending() {
	s.mu.Lock()
	waiting := len(s.pending) > 0 || len(s.dropped) > 0
	s.mu.Unlock()
	if waiting {
		s.flush()
	}
}

// close writes what waits and stops the sink; records added later are
// dropped.
func (s *logSink) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
}

// flush writes the waiting records, grouped per job in their order, plus a
// marker for each execution that had records dropped.
func (s *logSink) flush() {
	s.flushing.Lock()
	defer s.flushing.Unlock()
	s.mu.Lock()
	pending, dropped := s.pending, s.dropped
	s.pending, s.bytes, s.dropped = nil, 0, nil
	s.mu.Unlock()
	if len(pending) == 0 && len(dropped) == 0 {
		return
	}
	var batches []queue.LogBatch
	index := map[string]int{}
	batchOf := func(job string) *queue.LogBatch {
		i, ok := index[job]
		if !ok {
			i = len(batches)
			index[job] = i
			batches = append(batches, queue.LogBatch{JobID: job})
		}
		return &batches[i]
	}
	for _, p := range pending {
		b := batchOf(p.job)
		b.Records = append(b.Records, p.rec)
	}
	for k, n := range dropped {
		b := batchOf(k.job)
		b.Records = append(b.Records, markerRecord(CurrentTaskInfo{JobID: k.job, TaskID: k.task, Attempt: k.attempt,
			RunnerID: k.runner, Identifier: TaskIdentifier{Name: k.name}},
			fmt.Sprintf("%d log records of this task were not stored: the runner's log buffer was full (Redis slow or unreachable)", n)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), logWriteTimeout)
	defer cancel()
	if _, err := s.q.AppendLogs(ctx, batches, s.perJob, s.runner); err != nil {
		s.failures++
		if time.Since(s.warned) >= logWarnEvery {
			s.logger.Warn("storing task logs failed; their records are dropped", slog.Int("failed_writes", s.failures),
				slog.Any("error", err))
			s.warned, s.failures = time.Now(), 0
		}
	}
}

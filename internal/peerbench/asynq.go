package peerbench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// asynqEnqueuers is how many goroutines call Enqueue at once; asynq's
// client pool holds 10 connections per CPU.
const asynqEnqueuers = 16

// asynqTaskCheck is asynq's TaskCheckInterval: how long its processor
// sleeps (from half to one and a half times this) after finding the queue
// empty. The default, 1 s, would measure that sleep at the start of a run.
const asynqTaskCheck = time.Millisecond

// quietLogger drops asynq's logs.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// asynq enqueues r.Tasks no-op tasks to an asynq Server in this process at
// r.Concurrency. Completed is when the handler has run r.Tasks times and the
// queue's pending and active lists are empty.
func (h *Harness) asynq(ctx context.Context, r *Result) error {
	var ran atomic.Int64
	allRan := make(chan struct{})
	n := int64(r.Tasks)
	handler := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if ran.Add(1) == n {
			close(allRan)
		}
		return nil
	})
	conn := asynq.RedisClientOpt{Addr: h.addr}
	srv := asynq.NewServer(conn, asynq.Config{
		Concurrency:       r.Concurrency,
		TaskCheckInterval: asynqTaskCheck,
		Logger:            quietLogger{},
		LogLevel:          asynq.FatalLevel,
	})
	if err := srv.Start(handler); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}
	defer srv.Shutdown()
	client := asynq.NewClient(conn)
	defer client.Close()
	time.Sleep(settle)

	m, err := h.start(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := enqueueAll(ctx, client, r.Tasks); err != nil {
		return err
	}
	r.Enqueue = time.Since(start)
	select {
	case <-allRan:
	case <-time.After(10 * time.Minute):
		return fmt.Errorf("only %d of %d tasks ran within 10 minutes", ran.Load(), n)
	case <-ctx.Done():
		return ctx.Err()
	}
	// The handler has returned; the task is complete once asynq's done
	// script has taken it off the active list.
	for {
		pipe := h.rdb.Pipeline()
		pending := pipe.LLen(ctx, "asynq:{default}:pending")
		active := pipe.LLen(ctx, "asynq:{default}:active")
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("read asynq queue lengths: %w", err)
		}
		if pending.Val() == 0 && active.Val() == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r.Elapsed = time.Since(start)
	if err := m.stop(ctx, r); err != nil {
		return err
	}
	if got := ran.Load(); got != n {
		return fmt.Errorf("the handler ran %d times for %d tasks", got, n)
	}
	return nil
}

// enqueueAll enqueues n tasks of type "noop" with no payload from
// asynqEnqueuers goroutines.
func enqueueAll(ctx context.Context, client *asynq.Client, n int) error {
	var next atomic.Int64
	errs := make([]error, asynqEnqueuers)
	var wg sync.WaitGroup
	for w := range asynqEnqueuers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := client.EnqueueContext(ctx, asynq.NewTask("noop", nil)); err != nil {
					errs[w] = fmt.Errorf("enqueue: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kinds of job events.
const (
	// EventState: the job's state changed (JobEvent.State holds the new one).
	EventState = "state"
	// EventProgress: a call committed tasks that changed the job's progress.
	EventProgress = "progress"
	// EventTasks: task counts changed; at most one every 250 ms per job.
	EventTasks = "tasks"
)

// NoEvent is the event id to read a job's events from when none was seen.
const NoEvent = "0-0"

// JobEvent is one entry of a job's event stream. The functions of
// runfleet.lua add them in the same atomic call that changed the job, so a
// reader blocked on the stream learns of a change as soon as it is made.
// Events are hints like the task streams: the job record is the truth, and
// the stream is capped, so a reader that fell behind reads the job again.
type JobEvent struct {
	ID    string // stream entry id, to read on after it
	Kind  string // EventState, EventProgress or EventTasks
	State string // the new job state, for EventState
	At    time.Time
}

// WatchJob reads a job together with the id of its newest event in one
// atomic step (NoEvent when it has none). Reading events after that id then
// misses no change made since the read.
func (q *Queue) WatchJob(ctx context.Context, id string) (Job, string, error) {
	pipe := q.rdb.TxPipeline()
	jc := pipe.HMGet(ctx, jobKey(id), jobFields...)
	pc := pipe.HGetAll(ctx, jobPrefix(id)+"progress")
	ec := pipe.XRevRangeN(ctx, eventsKey(id), "+", "-", 1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Job{}, "", fmt.Errorf("get job: %w", err)
	}
	j, err := jobFrom(id, jc.Val(), pc.Val())
	if err != nil {
		return Job{}, "", err
	}
	last := NoEvent
	if es := ec.Val(); len(es) > 0 {
		last = es[0].ID
	}
	return j, last, nil
}

// JobEvents blocks up to block (at least 1 ms) for events of a job newer
// than the event id after, and returns at most count of them, oldest first;
// none when the time passes. A blocked call holds one connection of the
// client's pool, and does not end early when ctx is canceled.
func (q *Queue) JobEvents(ctx context.Context, id, after string, count int, block time.Duration) ([]JobEvent, error) {
	// BLOCK 0 would wait forever.
	block = max(block, time.Millisecond)
	res, err := q.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{eventsKey(id), after}, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read job events: %w", err)
	}
	var out []JobEvent
	for _, s := range res {
		for _, m := range s.Messages {
			kind, _ := m.Values["e"].(string)
			state, _ := m.Values["s"].(string)
			at, _ := m.Values["t"].(string)
			out = append(out, JobEvent{ID: m.ID, Kind: kind, State: state, At: msTime(at)})
		}
	}
	return out, nil
}

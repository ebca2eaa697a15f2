package peerbench

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// meterClient is the client name of the harness's own connection, so that
// SLOWLOG entries of its commands can be left out.
const meterClient = "peerbench-meter"

// settle is how long a new worker idles before the meter starts, so that
// connection set-up, function loading and the first heartbeats fall outside
// the measured window.
const settle = 300 * time.Millisecond

// Harness runs the two systems, one at a time, on one redis-server.
type Harness struct {
	addr string
	rdb  *redis.Client // the meter's own connection
	// Profile makes each run log every command in SLOWLOG and report the
	// cost per function or script (Result.Functions). It adds Redis CPU:
	// use it for the breakdown, not for the headline figures.
	Profile bool
}

// New connects to the redis-server at addr (host:port), which the harness
// flushes before every run.
func New(ctx context.Context, addr string) (*Harness, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ClientName: meterClient})
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("ping redis at %s: %w", addr, err)
	}
	return &Harness{addr: addr, rdb: rdb}, nil
}

// Close closes the meter's connection.
func (h *Harness) Close() error { return h.rdb.Close() }

// Result is one measured run of one system.
type Result struct {
	System      string        `json:"system"` // "runfleet" or "asynq"
	Tasks       int           `json:"tasks"`
	Concurrency int           `json:"concurrency"`
	Elapsed     time.Duration `json:"elapsed_ns"` // submit → all completed
	// Enqueue is how long submitting took (asynq: all Enqueue calls
	// returned; runfleet: Submit of the one job returned).
	Enqueue  time.Duration `json:"enqueue_ns"`
	RedisCPU time.Duration `json:"redis_cpu_ns"` // INFO cpu delta over the run
	ProcCPU  time.Duration `json:"proc_cpu_ns"`  // this process (client and worker) over the run
	// Commands is INFO commandstats over the run, most expensive first.
	// Commands that functions and scripts call are counted both on their
	// own line and in the FCALL or EVALSHA that called them.
	Commands []CommandStat `json:"commands"`
	// Functions is the cost per top-level command, FCALL per function and
	// EVALSHA per script, from SLOWLOG (Profile runs only).
	Functions []CommandStat `json:"functions,omitempty"`
	// Inside is what the functions and scripts called, labelled
	// "<caller>: <command>", from SLOWLOG (Profile runs only).
	Inside  []CommandStat `json:"inside,omitempty"`
	Started time.Time     `json:"started"`
	Pair    int           `json:"pair"`    // the two runs of one pair share it
	Profile bool          `json:"profile"` // every command was logged (see Harness.Profile)
}

// TasksPerSec is Tasks divided by Elapsed.
func (r Result) TasksPerSec() float64 { return float64(r.Tasks) / r.Elapsed.Seconds() }

// RedisCPUPerTask is the Redis CPU per task in microseconds.
func (r Result) RedisCPUPerTask() float64 { return perTask(r.RedisCPU, r.Tasks) }

// ProcCPUPerTask is this process's CPU per task in microseconds.
func (r Result) ProcCPUPerTask() float64 { return perTask(r.ProcCPU, r.Tasks) }

func perTask(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

// Top lists the k most expensive commands as "name µs/task (calls/task)".
func (r Result) Top(k int, from []CommandStat) string {
	s := ""
	for i, c := range from {
		if i == k {
			break
		}
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.1fµs (%.2f calls)", c.Name, float64(c.Usec)/float64(r.Tasks), float64(c.Calls)/float64(r.Tasks))
	}
	return s
}

// reset empties the server and readies it for a run: FLUSHALL, and in
// Profile mode every command logged in a log long enough for the run.
func (h *Harness) reset(ctx context.Context, tasks int) error {
	if err := h.rdb.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("flushall: %w", err)
	}
	if err := h.rdb.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		return fmt.Errorf("slowlog reset: %w", err)
	}
	if h.Profile {
		// The log holds the commands scripts call too: asynq logs about 16
		// per task (3 scripts and what they call), runfleet about 12.
		if err := h.rdb.ConfigSet(ctx, "slowlog-max-len", fmt.Sprint(25*tasks+100_000)).Err(); err != nil {
			return fmt.Errorf("config set slowlog-max-len: %w", err)
		}
		if err := h.rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err(); err != nil {
			return fmt.Errorf("config set slowlog-log-slower-than: %w", err)
		}
	}
	return nil
}

// restore puts the slow log back as testenv starts it.
func (h *Harness) restore(ctx context.Context) {
	if h.Profile {
		_ = h.rdb.ConfigSet(ctx, "slowlog-log-slower-than", "1000").Err()
		_ = h.rdb.Do(ctx, "SLOWLOG", "RESET").Err()
		_ = h.rdb.ConfigSet(ctx, "slowlog-max-len", "1024").Err()
	}
}

// meter is one run's window: CPU of both processes and commandstats.
type meter struct {
	h        *Harness
	redisCPU time.Duration
	procCPU  time.Duration
}

// start zeroes commandstats and the slow log and notes the CPU so far.
func (h *Harness) start(ctx context.Context) (*meter, error) {
	if err := h.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return nil, fmt.Errorf("config resetstat: %w", err)
	}
	if err := h.rdb.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		return nil, fmt.Errorf("slowlog reset: %w", err)
	}
	cpu, err := redisCPU(ctx, h.rdb)
	if err != nil {
		return nil, err
	}
	return &meter{h: h, redisCPU: cpu, procCPU: processCPU()}, nil
}

// stop fills r's CPU and command figures for the window.
func (m *meter) stop(ctx context.Context, r *Result) error {
	proc := processCPU()
	cpu, err := redisCPU(ctx, m.h.rdb)
	if err != nil {
		return err
	}
	r.RedisCPU, r.ProcCPU = cpu-m.redisCPU, proc-m.procCPU
	if r.Commands, err = commandStats(ctx, m.h.rdb); err != nil {
		return err
	}
	if m.h.Profile {
		logs, err := m.h.rdb.SlowLogGet(ctx, -1).Result()
		if err != nil {
			return fmt.Errorf("slowlog get: %w", err)
		}
		max, err := m.h.rdb.ConfigGet(ctx, "slowlog-max-len").Result()
		if err != nil {
			return fmt.Errorf("config get slowlog-max-len: %w", err)
		}
		if fmt.Sprint(len(logs)) == max["slowlog-max-len"] {
			return fmt.Errorf("the slow log is full (%d entries): the per-function figures would be short", len(logs))
		}
		r.Functions, r.Inside = functionCosts(logs, meterClient)
	}
	return nil
}

// Run measures one system: "runfleet" or "asynq".
func (h *Harness) Run(ctx context.Context, system string, tasks, concurrency int) (Result, error) {
	if tasks < 1 || concurrency < 1 {
		return Result{}, fmt.Errorf("tasks %d and concurrency %d must be positive", tasks, concurrency)
	}
	if err := h.reset(ctx, tasks); err != nil {
		return Result{}, err
	}
	defer h.restore(ctx)
	r := Result{System: system, Tasks: tasks, Concurrency: concurrency, Started: time.Now(), Profile: h.Profile}
	var err error
	switch system {
	case "runfleet":
		err = h.runfleet(ctx, &r)
	case "asynq":
		err = h.asynq(ctx, &r)
	default:
		err = fmt.Errorf("unknown system %q (want runfleet or asynq)", system)
	}
	if err != nil {
		return Result{}, fmt.Errorf("%s, %d tasks, concurrency %d: %w", system, tasks, concurrency, err)
	}
	return r, nil
}

package testenv

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrInjected is the error a Faults hook makes calls fail with.
var ErrInjected = errors.New("testenv: injected redis fault")

// Faults is a go-redis hook that makes calls to a real server fail on
// demand: while asleep, or for a window of calls counted from now. A
// pipeline counts as one call. Add it with client.AddHook.
type Faults struct {
	mu     sync.Mutex
	asleep bool
	calls  int64 // calls seen so far
	from   int64 // fail calls numbered from..to (inclusive); 0: none
	to     int64
	late   bool // in the window, fail after the call ran (its reply is lost)
	failed int64
}

// Sleep makes every call fail until Wake.
func (f *Faults) Sleep() { f.mu.Lock(); f.asleep = true; f.mu.Unlock() }

// Wake ends Sleep.
func (f *Faults) Wake() { f.mu.Lock(); f.asleep = false; f.mu.Unlock() }

// FailWindow makes calls number n+1 .. n+count from now fail before they
// reach the server.
func (f *Faults) FailWindow(n, count int) { f.window(n, count, false) }

// LoseReplies makes calls number n+1 .. n+count from now run on the server
// and then fail, as if the connection dropped before the reply came back.
func (f *Faults) LoseReplies(n, count int) { f.window(n, count, true) }

func (f *Faults) window(n, count int, late bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.from, f.to, f.late = f.calls+int64(n)+1, f.calls+int64(n+count), late
}

// Failed is how many calls were made to fail.
func (f *Faults) Failed() int64 { f.mu.Lock(); defer f.mu.Unlock(); return f.failed }

// fail decides the fate of the next call: fail before sending, or after.
func (f *Faults) fail() (before, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.asleep {
		f.failed++
		return true, false
	}
	if f.from > 0 && f.calls >= f.from && f.calls <= f.to {
		f.failed++
		return !f.late, f.late
	}
	return false, false
}

// DialHook fails new connections while asleep.
func (f *Faults) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		f.mu.Lock()
		asleep := f.asleep
		f.mu.Unlock()
		if asleep {
			return nil, ErrInjected
		}
		return next(ctx, network, addr)
	}
}

// ProcessHook fails single commands.
func (f *Faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		before, after := f.fail()
		if before {
			cmd.SetErr(ErrInjected)
			return ErrInjected
		}
		err := next(ctx, cmd)
		if after {
			cmd.SetErr(ErrInjected)
			return ErrInjected
		}
		return err
	}
}

// ProcessPipelineHook fails whole pipelines.
func (f *Faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		before, after := f.fail()
		if !before {
			err := next(ctx, cmds)
			if !after {
				return err
			}
		}
		for _, c := range cmds {
			c.SetErr(ErrInjected)
		}
		return ErrInjected
	}
}

package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/runfleet/runfleet/internal/gpu"
	"github.com/runfleet/runfleet/rftype"
)

// Device is a GPU (or other accelerator) handed to one execution at a time;
// a running task finds its device in CurrentTask(ctx).Devices.
type Device = rftype.Device

// CUDAVisibleDevices is the CUDA_VISIBLE_DEVICES value that limits what a
// task starts to the task's devices, e.g.
//
//	info, _ := workflows.CurrentTask(ctx)
//	cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES="+workflows.CUDAVisibleDevices(info.Devices))
//
// It names devices by UUID where known, else by index; for no devices it is
// "", which hides every GPU.
func CUDAVisibleDevices(devs []Device) string { return rftype.CUDAVisibleDevices(devs) }

// DevicePool hands out a runner's devices: each execution gets exactly one
// and the runner keeps it until the execution's result is committed, so no
// two executions use a device at once and a pool of n devices never has
// more than n tasks running in Redis. One pool may be shared by several
// runners of a process (runnerd shares one among all its runners and
// releases): a runner reserves a free device for every task before it
// claims it (never waiting after the claim), so it claims only as many
// tasks as it can reserve devices for, and none while every device is busy.
type DevicePool struct {
	all []Device

	mu    sync.Mutex
	free  [][]Device    // one-device slices of all, handed out without allocating
	avail chan struct{} // closed while a device is free; replaced when none is
}

// NewDevicePool returns a pool of devs; they must be at least one, with
// distinct indexes.
func NewDevicePool(devs []Device) (*DevicePool, error) {
	if len(devs) == 0 {
		return nil, errors.New("device pool: no devices")
	}
	p := &DevicePool{all: slices.Clone(devs), avail: make(chan struct{})}
	for i, d := range p.all {
		if slices.ContainsFunc(p.all[:i], func(o Device) bool { return o.Index == d.Index }) {
			return nil, fmt.Errorf("device pool: device %d given twice", d.Index)
		}
	}
	// Handed out from the end: the first device goes first.
	for i := len(p.all) - 1; i >= 0; i-- {
		p.free = append(p.free, p.all[i:i+1:i+1])
	}
	close(p.avail)
	return p, nil
}

// Devices lists the pool's devices.
func (p *DevicePool) Devices() []Device { return slices.Clone(p.all) }

// Len is the number of devices.
func (p *DevicePool) Len() int { return len(p.all) }

// available is closed while at least one device is free.
func (p *DevicePool) available() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.avail
}

// tryReserve takes up to n free devices without waiting: none when every
// device is busy. The slices returned are the pool's: callers must not
// change them.
func (p *DevicePool) tryReserve(n int) [][]Device {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = min(n, len(p.free))
	if n <= 0 {
		return nil
	}
	got := slices.Clone(p.free[len(p.free)-n:])
	slices.Reverse(got) // the first device first
	p.free = p.free[:len(p.free)-n]
	if len(p.free) == 0 {
		p.avail = make(chan struct{})
	}
	return got
}

// release returns devices tryReserve handed out.
func (p *DevicePool) release(devs ...[]Device) {
	if len(devs) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	wasEmpty := len(p.free) == 0
	p.free = append(p.free, devs...)
	if wasEmpty {
		close(p.avail)
	}
}

// releaseAfter returns dev once gone is closed (nil: now): a device an
// abandoned execution may still use stays out of the pool until what runs
// it is gone.
func (p *DevicePool) releaseAfter(dev []Device, gone <-chan struct{}) {
	if dev == nil {
		return
	}
	if gone == nil {
		p.release(dev)
		return
	}
	go func() {
		<-gone
		p.release(dev)
	}()
}

// WithDevices gives the runner a pool of devices: each execution is handed
// one (CurrentTask(ctx).Devices), and without WithConcurrency the runner
// runs as many tasks at once as the pool has devices. Default: no devices.
func WithDevices(pool *DevicePool) RunOption {
	return func(c *runConfig) { c.devices, c.gpuSpec = pool, nil }
}

// WithGPUs gives the runner the host's GPUs named by spec, as `runfleet
// runner start --gpus` does: "all", a count "N" (the first N devices), or
// indexes "0,2" ("device=1" for one). Devices are listed with nvidia-smi;
// where it is not installed, only indexes are accepted, as given. Each run
// gets a pool of its own; share one pool between runners with WithDevices.
func WithGPUs(spec string) RunOption {
	return func(c *runConfig) { c.gpuSpec, c.devices = &spec, nil }
}

// resolveDevices turns a WithGPUs spec into the run's pool.
func (c *runConfig) resolveDevices(ctx context.Context) error {
	if c.gpuSpec == nil {
		return nil
	}
	devs, err := gpu.Resolve(ctx, *c.gpuSpec)
	if err != nil {
		return err
	}
	c.devices, err = NewDevicePool(devs)
	return err
}

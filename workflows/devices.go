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
// and returns it when it ends, so no two executions use a device at once.
// One pool may be shared by several runners of a process (runnerd shares
// one among all its runners and releases); executions then wait for a free
// device, and runners claim no task while every device is busy.
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

// acquire takes a free device, waiting until one is or ctx ends. The slice
// returned is the pool's: callers must not change it.
func (p *DevicePool) acquire(ctx context.Context) ([]Device, error) {
	for {
		p.mu.Lock()
		if n := len(p.free); n > 0 {
			d := p.free[n-1]
			p.free = p.free[:n-1]
			if n == 1 {
				p.avail = make(chan struct{})
			}
			p.mu.Unlock()
			return d, nil
		}
		avail := p.avail
		p.mu.Unlock()
		select {
		case <-avail:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// release returns a device acquire handed out.
func (p *DevicePool) release(d []Device) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, d)
	if len(p.free) == 1 {
		close(p.avail)
	}
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

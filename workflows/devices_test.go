package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

// deviceLedger records, for one test, which device each execution got and
// catches two executions on one device at once.
type deviceLedger struct {
	inUse    sync.Map // device index -> *atomic.Bool
	running  atomic.Int64
	peak     atomic.Int64
	mu       sync.Mutex
	got      map[int]int // device index -> executions
	problems []string
	hold     chan struct{} // Hold tasks wait until it closes
}

var deviceLedgers sync.Map // key -> *deviceLedger

func newDeviceLedger(t *testing.T) (string, *deviceLedger) {
	l := &deviceLedger{got: map[int]int{}, hold: make(chan struct{})}
	deviceLedgers.Store(t.Name(), l)
	t.Cleanup(func() { deviceLedgers.Delete(t.Name()) })
	return t.Name(), l
}

func (l *deviceLedger) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// UseDevice holds its device for MS milliseconds, or checks it has none.
type UseDevice struct {
	Key      string `json:"key"`
	MS       int    `json:"ms"`
	Children int    `json:"children"`
	NoDevice bool   `json:"no_device"`
	Hold     bool   `json:"hold"` // keep the device until the test closes the ledger's hold
}

func (u *UseDevice) Execute(ctx context.Context) error {
	v, ok := deviceLedgers.Load(u.Key)
	if !ok {
		return errors.New("no ledger for " + u.Key)
	}
	l := v.(*deviceLedger)
	info, _ := workflows.CurrentTask(ctx)
	if u.NoDevice {
		if len(info.Devices) != 0 {
			l.problem("task %d got devices %v on a runner without a pool", info.TaskID, info.Devices)
		}
		return nil
	}
	if len(info.Devices) != 1 {
		l.problem("task %d got %d devices, want exactly 1", info.TaskID, len(info.Devices))
		return nil
	}
	dev := info.Devices[0].Index
	flag, _ := l.inUse.LoadOrStore(dev, new(atomic.Bool))
	if !flag.(*atomic.Bool).CompareAndSwap(false, true) {
		l.problem("device %d used by two executions at once (task %d)", dev, info.TaskID)
		return nil
	}
	n := l.running.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	l.mu.Lock()
	l.got[dev]++
	l.mu.Unlock()
	time.Sleep(time.Duration(u.MS) * time.Millisecond)
	if u.Hold {
		<-l.hold
	}
	l.running.Add(-1)
	flag.(*atomic.Bool).Store(false)
	for i := 0; i < u.Children; i++ {
		if _, err := workflows.SubmitSubtask(ctx, &UseDevice{Key: u.Key, MS: u.MS}); err != nil {
			return err
		}
	}
	return nil
}

func (b *testBundle) deviceRunner(t *testing.T) *workflows.Runner {
	t.Helper()
	r, err := b.client.NewRunner(b.ctx, b.cluster, &UseDevice{})
	require.NoError(t, err)
	return r
}

// A direct runner given two devices runs two tasks at once by default, each
// on a device of its own, and registers its devices.
func TestEachExecutionGetsOneDeviceOfItsOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, l := newDeviceLedger(t)
	r := b.deviceRunner(t)
	j := b.submit(t, &UseDevice{Key: key, MS: 20, Children: 24})
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	done := make(chan error, 1)
	// Indexes as given: no nvidia-smi here, so they are not checked.
	go func() { done <- r.RunForever(ctx, workflows.WithGPUs("0,1"), workflows.WithGracePeriod(0)) }()

	// While it runs, the registry shows its devices and concurrency.
	require.Eventually(t, func() bool {
		rs, err := b.client.Clusters().Runners(b.ctx, b.cluster)
		require.NoError(t, err)
		return len(rs) == 1
	}, 10*time.Second, 10*time.Millisecond)
	rs, err := b.client.Clusters().Runners(b.ctx, b.cluster)
	require.NoError(t, err)
	require.Equal(t, r.ID(), rs[0].ID)
	require.Equal(t, []workflows.Device{{Index: 0}, {Index: 1}}, rs[0].Devices)
	require.Equal(t, 2, rs[0].Concurrency, "concurrency defaults to the number of devices")
	require.NotEmpty(t, rs[0].Version)

	final, err := b.client.Jobs().Wait(b.ctx, j.ID, 10*time.Millisecond, nil)
	require.NoError(t, err)
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, workflows.JobCompleted, final.State)

	require.Empty(t, l.problems)
	require.Equal(t, int64(2), l.peak.Load(), "two tasks ran at once, never more")
	require.Len(t, l.got, 2, "both devices were used")
	require.Equal(t, 25, l.got[0]+l.got[1], "every execution got exactly one device")
	ts, err := b.client.Jobs().Tasks(b.ctx, j.ID)
	require.NoError(t, err)
	for _, task := range ts {
		require.Equal(t, 1, task.Attempts)
	}
}

// Runners sharing one pool never put two executions on a device, however
// high their concurrency, and claim no more tasks than they have devices
// for: a claimed task never waits for a device while it shows as running.
func TestRunnersSharingAPoolNeverShareADevice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, l := newDeviceLedger(t)
	pool, err := workflows.NewDevicePool([]workflows.Device{{Index: 3, UUID: "GPU-test-3"}})
	require.NoError(t, err)
	runners := []*workflows.Runner{b.deviceRunner(t), b.deviceRunner(t)}
	j := b.submit(t, &UseDevice{Key: key, MS: 200, Children: 6})
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, r.RunForever(ctx, workflows.WithDevices(pool), workflows.WithConcurrency(4),
				workflows.WithGracePeriod(0)))
		}()
	}
	// Watch the job's tasks in Redis until it ends.
	var peakRunning int64
	for {
		info := b.job(t, j.ID)
		peakRunning = max(peakRunning, info.TaskCounts[workflows.TaskRunning])
		if info.State != workflows.JobSubmitted && info.State != workflows.JobRunning {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	final := b.job(t, j.ID)
	cancel()
	wg.Wait()
	require.Equal(t, workflows.JobCompleted, final.State)
	require.Equal(t, int64(1), peakRunning, "one device: never more than one task running in Redis")
	require.Empty(t, l.problems)
	require.Equal(t, int64(1), l.peak.Load())
	require.Equal(t, map[int]int{3: 7}, l.got)
}

// A runner whose devices are all busy leaves queued tasks to other runners,
// and stopping it hands nothing over late: they run elsewhere at once, not
// after its grace period, while its own task still runs.
func TestBusyDeviceRunnerLeavesTasksToOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, l := newDeviceLedger(t)
	busyPool, err := workflows.NewDevicePool([]workflows.Device{{Index: 7}})
	require.NoError(t, err)
	otherPool, err := workflows.NewDevicePool([]workflows.Device{{Index: 0}})
	require.NoError(t, err)
	busy := b.deviceRunner(t)
	busyCtx, stopBusy := context.WithCancel(b.ctx)
	defer stopBusy()
	busyDone := make(chan error, 1)
	go func() {
		busyDone <- busy.RunForever(busyCtx, workflows.WithDevices(busyPool), workflows.WithConcurrency(4),
			workflows.WithGracePeriod(time.Minute))
	}()
	held := b.submit(t, &UseDevice{Key: key, Hold: true})
	require.Eventually(t, func() bool { return l.running.Load() == 1 }, 10*time.Second, 5*time.Millisecond)

	var queued []string
	for range 3 {
		queued = append(queued, b.submit(t, &UseDevice{Key: key, MS: 20}).ID)
	}
	require.Never(t, func() bool {
		for _, id := range queued {
			if b.job(t, id).TaskCounts[workflows.TaskRunning] > 0 {
				return true
			}
		}
		return false
	}, 300*time.Millisecond, 10*time.Millisecond, "a runner with no free device claims nothing")

	stopBusy() // grace period of a minute: its held task goes on
	other := b.deviceRunner(t)
	otherCtx, stopOther := context.WithCancel(b.ctx)
	defer stopOther()
	otherDone := make(chan error, 1)
	go func() {
		otherDone <- other.RunForever(otherCtx, workflows.WithDevices(otherPool), workflows.WithGracePeriod(0))
	}()
	for _, id := range queued {
		final, err := b.client.Jobs().Wait(b.ctx, id, 10*time.Millisecond, nil)
		require.NoError(t, err)
		require.Equal(t, workflows.JobCompleted, final.State)
		ts, err := b.client.Jobs().Tasks(b.ctx, id)
		require.NoError(t, err)
		require.Equal(t, 1, ts[0].Attempts, "never claimed by the busy runner")
	}
	select {
	case err := <-busyDone:
		t.Fatalf("the busy runner returned (%v) before its held task ended", err)
	default:
	}
	l.mu.Lock()
	require.Equal(t, map[int]int{7: 1, 0: 3}, l.got, "the queued tasks ran on the other runner's device")
	l.mu.Unlock()

	close(l.hold)
	require.NoError(t, <-busyDone)
	require.Equal(t, workflows.JobCompleted, b.job(t, held.ID).State)
	stopOther()
	require.NoError(t, <-otherDone)
	require.Empty(t, l.problems)
}

// A runner without devices hands none out.
func TestNoDevicesWithoutAPool(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, l := newDeviceLedger(t)
	r := b.deviceRunner(t)
	j := b.submit(t, &UseDevice{Key: key, NoDevice: true})
	require.NoError(t, r.RunAll(b.ctx))
	require.Equal(t, workflows.JobCompleted, b.job(t, j.ID).State)
	require.Empty(t, l.problems)
	rs, err := b.client.Clusters().Runners(b.ctx, b.cluster)
	require.NoError(t, err)
	require.Empty(t, rs, "a stopped runner is not listed")
}

func TestBadDeviceOptionsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.deviceRunner(t)
	err := r.RunAll(b.ctx, workflows.WithGPUs("0,x"))
	require.EqualError(t, err, `--gpus "0,x": "x" is not a device index`)
	_, err = workflows.NewDevicePool(nil)
	require.ErrorContains(t, err, "no devices")
	_, err = workflows.NewDevicePool([]workflows.Device{{Index: 1}, {Index: 1}})
	require.ErrorContains(t, err, "device 1 given twice")
}

func TestCUDAVisibleDevices(t *testing.T) {
	t.Parallel()
	require.Equal(t, "", workflows.CUDAVisibleDevices(nil))
	require.Equal(t, "GPU-a,2", workflows.CUDAVisibleDevices([]workflows.Device{{Index: 0, UUID: "GPU-a"}, {Index: 2}}))
}

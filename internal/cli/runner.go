package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/gpu"
	"github.com/runfleet/runfleet/runnerd"
	"github.com/runfleet/runfleet/workflows"
)

func (a *app) runnerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "Run release runners (runnerd)",
		Example: `  runfleet runner start --cluster dev
  runfleet runner start --cluster dev -n 4 --concurrency 8 --store s3://releases/team
  runfleet runner start --cluster gpu --gpus all`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.runnerStartCmd("start"))
	return cmd
}

type runnerStartOptions struct {
	cluster      string
	runners      int
	concurrency  int
	gpus         string
	store        string
	cacheDir     string
	cacheMax     int64
	trustedKeys  []string
	grace        time.Duration
	heartbeatTTL time.Duration
	reclaim      time.Duration
	check        time.Duration
	metricsAddr  string
	verbose      bool
	taskLogBytes int
	jobLogBytes  int
	noTaskLogs   bool
	storedInputs int64

	concurrencySet bool // --concurrency was given
}

// runnerStartCmd is `runfleet runner start`, and with use "runnerd" the
// whole runnerd command.
func (a *app) runnerStartCmd(use string) *cobra.Command {
	var o runnerStartOptions
	path := "runfleet runner start"
	if use != "start" {
		path = use
	}
	cmd := &cobra.Command{
		Use:   use + " --cluster C [-n N] [--concurrency K] [--gpus all|N|0,2]",
		Short: "Run the workflow releases deployed to a cluster (a release runner)",
		Long: `Runs the workflow releases deployed to a cluster: watches the cluster's
deployments (runfleet workflow deploy), downloads each deployed release from
the store into a local cache, verifies it (digest, archive safety, manifest,
and signature when --trusted-key is given), starts one worker process per
release and claims the tasks its releases serve.

A new deployment starts taking tasks as soon as it is ready; the release it
replaces stops claiming and lets its running tasks finish. Undeploy drains and
stops. A worker that crashes is restarted with backoff and its tasks are
queued again.

--gpus gives the runner GPUs: "all", the first N ("2"), or device indexes
("0,2"; a single index is "device=1"). Devices are listed with nvidia-smi
(or $RUNFLEET_NVIDIA_SMI); on hosts without it only indexes are accepted,
as given, unchecked. Each execution is handed one device, which no other
execution of this process uses until it ends; a Go task finds it in
workflows.CurrentTask(ctx).Devices, and a worker of another language in the
execute message's "devices". Give what a task starts
CUDA_VISIBLE_DEVICES=workflows.CUDAVisibleDevices(devices). All runners of
the process (-n, and every deployed release) share one pool of the devices.
Without --concurrency, each runner runs as many tasks as there are devices.

--metrics-addr serves Prometheus metrics at http://ADDR/metrics: task
counters and durations per cluster and task, busy and free slots, and the
Go and process collectors.

What tasks write to workflows.Logger(ctx) is stored with their job in Redis
(runfleet job logs), at most --task-log-bytes per execution and
--job-log-bytes per job; --no-stored-logs stores none.

--cache sets where the job caches of the tasks live (workflows.JobCache):
"redis" (values up to 1 MiB, in the Redis runfleet uses) or an object store
URL; worker processes open an object store themselves, with the credentials
in the environment they inherit, and reach a Redis cache through this
runner.

SIGINT or SIGTERM stops claiming and lets running tasks finish within --grace;
a second signal hands them back at once.

The store is --store, else $RUNFLEET_STORE, else a file:// store under the
user's data directory; s3:// stores take their endpoint and credentials from
the standard AWS variables (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, …).`,
		Example: `  ` + path + ` --cluster dev
  ` + path + ` --cluster gpu -n 2 --concurrency 4 --store s3://releases/team
  ` + path + ` --cluster prod --trusted-key release.pub
  ` + path + ` --cluster gpu --gpus all --cache-dir /var/cache/runfleet/releases
  ` + path + ` --cluster gpu --gpus 0,2 --concurrency 2
  ` + path + ` --cluster dev --metrics-addr :9090`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.cluster == "" {
				return usageErrorf("--cluster is required")
			}
			o.concurrencySet = cmd.Flags().Changed("concurrency")
			return a.runnerStart(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "", "cluster whose deployments to run (required)")
	f.IntVarP(&o.runners, "runners", "n", 1, "runners sharing each release's worker process")
	f.IntVar(&o.concurrency, "concurrency", 1, "tasks each runner runs at once (default with --gpus: the number of devices)")
	f.StringVar(&o.gpus, "gpus", "", "GPUs to hand out, one per execution: "+gpu.SpecHelp+"; without nvidia-smi only indexes, unchecked")
	f.StringVar(&o.store, "store", "", "release store URL, file:///dir or s3://bucket/prefix (default $RUNFLEET_STORE, else a file store under the user's data directory)")
	f.StringVar(&o.cacheDir, "cache-dir", "", "directory for unpacked releases (default: the user cache directory + /runfleet/releases)")
	f.Int64Var(&o.cacheMax, "cache-max-bytes", 10<<30, "unpacked releases to keep in the cache once no deployment uses them, in bytes")
	f.StringArrayVar(&o.trustedKeys, "trusted-key", nil, "trusted ed25519 public key, base64 or a .pub file from `workflow keygen`; when given, unsigned releases and releases no trusted key signed are refused (repeatable)")
	f.DurationVar(&o.grace, "grace", 30*time.Second, "on stop or redeploy, how long running tasks may take to finish before they are handed back")
	f.DurationVar(&o.heartbeatTTL, "heartbeat-ttl", 5*time.Second, "how long a runner counts as alive after its last heartbeat")
	f.DurationVar(&o.reclaim, "reclaim-interval", time.Second, "how often to look for dead runners whose tasks must run again")
	f.DurationVar(&o.check, "check-interval", 10*time.Second, "how often to read deployments when no announcement arrives")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. :9090 (default: none)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log debug details too")
	f.IntVar(&o.taskLogBytes, "task-log-bytes", workflows.DefaultTaskLogBytes, "task log bytes one execution stores with its job; past them a marker says the rest was dropped")
	f.IntVar(&o.jobLogBytes, "job-log-bytes", workflows.DefaultJobLogBytes, "task log bytes one job stores over all its tasks")
	f.Int64Var(&o.storedInputs, "stored-input-memory", workflows.DefaultStoredInputMemory,
		"bytes of stored task inputs (over the inline limit) the runner's tasks hold at once; a task whose input does not fit waits; -1: no bound")
	f.BoolVar(&o.noTaskLogs, "no-stored-logs", false, "store no task logs in Redis (tasks' records still reach this runner's log)")
	f.StringVar(&a.jobCache, "cache", "", `where tasks' job caches (workflows.JobCache) live: "redis", or an object store URL such as s3://bucket/prefix or file:///dir, which worker processes open themselves (default $RUNFLEET_CACHE, else redis)`)
	f.StringVar(&a.payloads, "payloads", "", `the object store of task inputs above the inline limit (64 KiB), as submitters name it: s3://bucket/prefix or file:///dir, which worker processes open themselves (default $RUNFLEET_PAYLOADS, else the --cache store when it is one)`)
	return cmd
}

func (a *app) runnerStart(ctx context.Context, o runnerStartOptions) error {
	if o.runners < 1 {
		return usageErrorf("-n must be at least 1, got %d", o.runners)
	}
	if o.concurrency < 1 {
		return usageErrorf("--concurrency must be at least 1, got %d", o.concurrency)
	}
	if o.taskLogBytes < 1 || o.jobLogBytes < 1 {
		return usageErrorf("--task-log-bytes and --job-log-bytes must be at least 1, got %d and %d", o.taskLogBytes, o.jobLogBytes)
	}
	var devices []workflows.Device
	if o.gpus != "" {
		var err error
		if devices, err = gpu.Resolve(ctx, o.gpus); err != nil {
			return usageErrorf("%v", err)
		}
		if !o.concurrencySet {
			o.concurrency = len(devices)
		}
	}
	var keys []ed25519.PublicKey
	for _, k := range o.trustedKeys {
		pub, err := readPublicKey(k)
		if err != nil {
			return usageErrorf("%v", err)
		}
		keys = append(keys, pub)
	}
	store, err := a.openStore(ctx, o.store)
	if err != nil {
		return err
	}
	logger := a.daemonLogger(o.verbose)
	// The daemon logs its own progress; the CLI's client logs warnings only.
	a.service = "runfleet-runner"
	client, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	d, err := runnerd.New(runnerd.Config{
		Client: client, Cluster: o.cluster, Store: store, CacheDir: o.cacheDir, CacheMaxBytes: o.cacheMax,
		TrustedKeys: keys, Runners: o.runners, CheckInterval: o.check, Logger: logger, Devices: devices,
		MetricsAddr: o.metricsAddr,
		RunOptions: []workflows.RunOption{workflows.WithConcurrency(o.concurrency), workflows.WithGracePeriod(o.grace),
			workflows.WithHeartbeatTTL(o.heartbeatTTL), workflows.WithReclaimInterval(o.reclaim),
			workflows.WithTaskLogs(workflows.TaskLogs{Off: o.noTaskLogs, PerTask: o.taskLogBytes, PerJob: o.jobLogBytes}),
			workflows.WithStoredInputMemory(o.storedInputs)},
	})
	if err != nil {
		return usageErrorf("%v", err)
	}
	if len(devices) > 0 {
		logger.Info("GPUs to hand out, one per execution", slog.String("gpus", gpuList(devices)),
			slog.Int("concurrency", o.concurrency))
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	a.notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer a.stopNotify(sigs)
	go func() {
		select {
		case <-sigs:
		case <-runCtx.Done():
			return
		}
		logger.Info("stopping: no new tasks; running tasks get the grace period", slog.Duration("grace", o.grace))
		cancel()
		select {
		case <-sigs:
			logger.Warn("second signal: handing running tasks back now")
			d.StopNow()
		case <-time.After(o.grace + time.Minute):
		}
	}()
	if err := d.Run(runCtx); err != nil {
		return fmt.Errorf("runner start: %w", err)
	}
	return nil
}

// gpuList writes devices as "0 (NVIDIA A100, GPU-…), 2": indexes, with model
// and UUID where known.
func gpuList(devs []workflows.Device) string {
	parts := make([]string, len(devs))
	for i, d := range devs {
		parts[i] = strconv.Itoa(d.Index)
		var about []string
		if d.Name != "" {
			about = append(about, d.Name)
		}
		if d.UUID != "" {
			about = append(about, d.UUID)
		}
		if len(about) > 0 {
			parts[i] += " (" + strings.Join(about, ", ") + ")"
		}
	}
	return strings.Join(parts, ", ")
}

// RunnerdMain is the runnerd command: `runfleet runner start` as its own
// program. It returns the exit code.
func RunnerdMain(ctx context.Context, args []string, s Streams) int {
	redis.SetLogger(quietRedisLogger{})
	a := newApp(s)
	if args == nil {
		args = []string{}
	}
	root := a.runnerStartCmd("runnerd")
	a.configureRoot(root)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return a.report(cmd, err)
}

// daemonLogger is the logger of a long-running command (runner, gateway):
// info on stderr, debug with --verbose.
func (a *app) daemonLogger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(a.err, &slog.HandlerOptions{Level: level}))
}

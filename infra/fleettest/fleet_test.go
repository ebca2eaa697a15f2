package fleettest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/infra/images"
	"github.com/runfleet/runfleet/internal/cli"
	"github.com/runfleet/runfleet/workflows"
)

const (
	cluster  = "fleet"
	subtasks = 2000
	// cutRunner is the runner the test cuts off the network; its hostname,
	// which starts the ids of its runners.
	cutRunner = "runner-3"
)

// TestFleetSurvivesACutRunnerAndARedisRestart brings up infra/compose.yaml,
// deploys the recorder workflow (testdata/recorder) and runs a job of 2,000
// subtasks. It keeps tasks running on runner-3 and cuts runner-3 off the
// network: those tasks must run again elsewhere once its heartbeat expires.
// Then it restarts Redis (AOF) and reconnects runner-3, whose late results
// must be refused. The job completes; every task ran at least once, each
// execution under its own attempt, and more than once only as often as it
// lost its runner.
func TestFleetSurvivesACutRunnerAndARedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("the container fleet test takes minutes; skipped with -short")
	}
	compose := composeCommand(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	b, err := images.NewBuilder(ctx, images.Config{})
	if errors.Is(err, images.ErrNoEngine) {
		t.Skipf("the container fleet needs a Docker engine: %v", err)
	}
	require.NoError(t, err)
	defer b.Close()
	// The runfleet images carry this checkout's code; Redis and MinIO do not.
	require.NoError(t, b.Build(ctx, "runfleet", "runnerd"), "build the images")
	require.NoError(t, b.Ensure(ctx, "redis", "minio"), "build the images")

	f := startFleet(ctx, t, compose)
	client, err := workflows.NewClient(ctx, workflows.WithRedisURL(f.redisURL()))
	require.NoError(t, err)
	defer client.Close()
	_, err = client.Clusters().Create(ctx, cluster, "")
	require.NoError(t, err)
	f.deployRecorder(t)

	// runner-3 holds every task it takes until the test lets go.
	hold := filepath.Join(f.records, cutRunner, "hold")
	require.NoError(t, os.WriteFile(hold, nil, 0o644))
	job, err := client.Jobs().SubmitRaw(ctx, workflows.SubmitRequest{Name: "fleet", Cluster: cluster,
		Task: workflows.NewTaskIdentifier("Spread", "v1.0"), Input: []byte(fmt.Sprintf(`{"n":%d,"ms":40}`, subtasks))})
	require.NoError(t, err)

	held := waitHeld(ctx, t, client, job.ID)
	t.Logf("%s holds %d tasks; cutting it off the network", cutRunner, len(held))
	f.docker(t, "network", "disconnect", f.network(), f.container(t, cutRunner))

	waitReclaimed(ctx, t, client, job.ID, held)
	j, err := client.Jobs().Get(ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, "running", j.State, "the job must still run when Redis restarts; raise the Record sleep")
	t.Log("its tasks ran elsewhere; restarting Redis")
	f.docker(t, "restart", "-t", "10", f.container(t, "redis"))
	f.docker(t, "network", "connect", f.network(), f.container(t, cutRunner))
	require.NoError(t, os.Remove(hold))

	waitCtx, cancelWait := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelWait()
	var final workflows.Job
	require.Eventually(t, func() bool {
		final, err = client.Jobs().Get(waitCtx, job.ID)
		return err == nil && final.State != "running" && final.State != "submitted"
	}, 3*time.Minute, 250*time.Millisecond, "job %s did not finish", job.ID)
	require.Equal(t, "completed", final.State, "job %s", job.ID)

	tasks, err := client.Jobs().Tasks(ctx, job.ID)
	require.NoError(t, err)
	require.Len(t, tasks, subtasks+1)
	runs := f.executions(t, job.ID)
	extra := 0
	for _, task := range tasks {
		require.Equal(t, "computed", task.State, "task %d", task.Seq)
		require.True(t, task.Complete, "task %d", task.Seq)
		if task.Parent < 0 {
			continue // Spread records nothing
		}
		attempts := runs[task.Seq]
		require.NotEmpty(t, attempts, "task %d never ran", task.Seq)
		require.LessOrEqual(t, len(attempts), 1+task.Losses,
			"task %d ran %d times but lost its runner %d times: %v", task.Seq, len(attempts), task.Losses, attempts)
		require.Equal(t, task.Runner, attempts[task.Attempts],
			"task %d: the result kept must be the last attempt's (%d), by the runner that ran it; executions %v", task.Seq, task.Attempts, attempts)
		extra += len(attempts) - 1
		if h, ok := held[task.Seq]; ok {
			require.False(t, strings.HasPrefix(task.Runner, cutRunner+"-"), "task %d: the cut runner's late result was kept", task.Seq)
			require.Greater(t, task.Attempts, h, "task %d ran again after the cut", task.Seq)
			require.True(t, strings.HasPrefix(attempts[h], cutRunner+"-"), "task %d: attempt %d was the cut runner's", task.Seq, h)
		}
	}
	t.Logf("%d tasks, %d executions beyond one per task (tasks that lost their runner)", len(tasks), extra)
	// The job may complete before the cut runner, let go of its held
	// tasks, tries to commit them: wait for its refusal.
	var logs string
	refused := func() bool {
		logs = f.logs(t, cutRunner)
		return strings.Contains(logs, "completion refused") || strings.Contains(logs, "its result is dropped")
	}
	for deadline := time.Now().Add(90 * time.Second); !refused(); time.Sleep(time.Second) {
		require.True(t, time.Now().Before(deadline), "%s's late results were not refused; its log:\n%s", cutRunner, tail(logs, 40))
	}
}

// waitHeld waits until the cut runner runs tasks of the job and returns
// them with their attempts.
func waitHeld(ctx context.Context, t *testing.T, client *workflows.Client, jobID string) map[int64]int {
	t.Helper()
	held := map[int64]int{}
	require.Eventually(t, func() bool {
		tasks, err := client.Jobs().Tasks(ctx, jobID)
		if err != nil {
			return false
		}
		for _, task := range tasks {
			if task.State == "running" && task.Parent >= 0 && strings.HasPrefix(task.Runner, cutRunner+"-") {
				held[task.Seq] = task.Attempts
			}
		}
		return len(held) > 0
	}, 2*time.Minute, 100*time.Millisecond, "%s never ran a task of job %s", cutRunner, jobID)
	return held
}

// waitReclaimed waits until every held task was computed by another runner.
func waitReclaimed(ctx context.Context, t *testing.T, client *workflows.Client, jobID string, held map[int64]int) {
	t.Helper()
	var pending []int64
	require.Eventually(t, func() bool {
		tasks, err := client.Jobs().Tasks(ctx, jobID)
		if err != nil {
			return false
		}
		pending = pending[:0]
		for _, task := range tasks {
			if _, ok := held[task.Seq]; ok && (task.State != "computed" || strings.HasPrefix(task.Runner, cutRunner+"-")) {
				pending = append(pending, task.Seq)
			}
		}
		return len(pending) == 0
	}, 90*time.Second, 100*time.Millisecond, "tasks %v of the cut runner were not run elsewhere", pending)
}

// fleet is one compose project of infra/compose.yaml.
type fleet struct {
	compose                           []string // the compose command and its project arguments
	project                           string
	env                               []string
	records                           string // host directory with one records directory per runner
	redisPort, minioPort, gatewayPort int
}

func startFleet(ctx context.Context, t *testing.T, compose []string) *fleet {
	t.Helper()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	f := &fleet{project: "fleettest" + hex.EncodeToString(suffix), records: t.TempDir()}
	f.redisPort, f.minioPort, f.gatewayPort = freePort(t), freePort(t), freePort(t)
	override := "services:\n"
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("runner-%d", i)
		dir := filepath.Join(f.records, name)
		require.NoError(t, os.Mkdir(dir, 0o777))
		require.NoError(t, os.Chmod(dir, 0o777)) // the images run as uid 10001
		override += fmt.Sprintf("  %s:\n    environment:\n      FLEETTEST_RECORDS: /records\n    volumes: [%q]\n", name, dir+":/records")
	}
	overridePath := filepath.Join(t.TempDir(), "compose.test.yaml")
	require.NoError(t, os.WriteFile(overridePath, []byte(override), 0o644))
	f.compose = append(compose, "-p", f.project, "-f", "../compose.yaml", "-f", overridePath)
	f.env = append(os.Environ(),
		"RUNFLEET_CLUSTER="+cluster, "RUNFLEET_HEARTBEAT_TTL=2s",
		"RUNFLEET_REDIS_PORT="+strconv.Itoa(f.redisPort), "RUNFLEET_MINIO_PORT="+strconv.Itoa(f.minioPort),
		"RUNFLEET_GATEWAY_PORT="+strconv.Itoa(f.gatewayPort))

	t.Cleanup(func() {
		if t.Failed() {
			out, _ := f.run(context.Background(), "logs", "--no-color", "--tail", "60")
			t.Logf("fleet logs:\n%s", out)
		}
		if out, err := f.run(context.Background(), "down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	out, err := f.run(ctx, "up", "-d")
	require.NoError(t, err, "compose up:\n%s", out)

	require.Eventually(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", f.gatewayPort))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 200*time.Millisecond, "the gateway never answered /healthz")
	return f
}

func (f *fleet) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, f.compose[0], append(f.compose[1:], args...)...)
	cmd.Env = f.env
	return cmd.CombinedOutput()
}

func (f *fleet) redisURL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", f.redisPort) }

// network is the compose project's private network.
func (f *fleet) network() string { return f.project + "_fleet" }

// container is the id of service's container.
func (f *fleet) container(t *testing.T, service string) string {
	t.Helper()
	out, err := f.run(t.Context(), "ps", "-q", service)
	require.NoError(t, err, "compose ps %s: %s", service, out)
	id := strings.TrimSpace(string(out))
	require.NotEmpty(t, id, "no container of service %s", service)
	return id
}

func (f *fleet) docker(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "docker", args...).CombinedOutput()
	require.NoError(t, err, "docker %s: %s", strings.Join(args, " "), out)
}

func (f *fleet) logs(t *testing.T, service string) string {
	t.Helper()
	out, err := f.run(t.Context(), "logs", "--no-color", service)
	require.NoError(t, err, "compose logs %s", service)
	return string(out)
}

// deployRecorder builds, publishes and deploys testdata/recorder with the
// runfleet CLI, against the fleet's Redis and MinIO.
func (f *fleet) deployRecorder(t *testing.T) {
	t.Helper()
	t.Setenv("RUNFLEET_REDIS_URL", f.redisURL())
	t.Setenv("RUNFLEET_STORE", "s3://runfleet")
	t.Setenv("AWS_ENDPOINT_URL_S3", fmt.Sprintf("http://127.0.0.1:%d", f.minioPort))
	t.Setenv("AWS_ACCESS_KEY_ID", "runfleet")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "runfleet-dev-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	artifact := filepath.Join(t.TempDir(), "recorder.tar.zst")
	for _, args := range [][]string{
		{"workflow", "build", "--dir", "testdata/recorder", "--out", artifact},
		{"workflow", "publish", artifact},
		{"workflow", "deploy", "--cluster", cluster, "--workflow", "fleettest", "--latest"},
	} {
		var out bytes.Buffer
		code := cli.Main(t.Context(), args, cli.Streams{Out: &out, Err: &out})
		require.Equal(t, 0, code, "runfleet %s:\n%s", strings.Join(args, " "), out.String())
	}
}

// executions reads every runner's records of job: per task, the runner of
// each attempt. Two executions under one attempt fail the test.
func (f *fleet) executions(t *testing.T, jobID string) map[int64]map[int]string {
	t.Helper()
	runs := map[int64]map[int]string{}
	for i := 1; i <= 3; i++ {
		file, err := os.Open(filepath.Join(f.records, fmt.Sprintf("runner-%d", i), "executions.log"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			var job, runner string
			var seq int64
			var attempt int
			_, err := fmt.Sscanf(sc.Text(), "%s %d %d %s", &job, &seq, &attempt, &runner)
			require.NoError(t, err, "record %q", sc.Text())
			if job != jobID {
				continue
			}
			if runs[seq] == nil {
				runs[seq] = map[int]string{}
			}
			prev, dup := runs[seq][attempt]
			require.False(t, dup, "task %d ran twice as attempt %d: on %s and %s", seq, attempt, prev, runner)
			runs[seq][attempt] = runner
		}
		file.Close()
		require.NoError(t, sc.Err())
	}
	return runs
}

// composeCommand is `docker compose` where the plugin exists, else
// docker-compose; the test skips when neither does.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	t.Skip("the container fleet needs docker compose or docker-compose")
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Package walkthrough tests the README: it runs the shell blocks of the
// release walkthrough and of the events walkthrough exactly as written, with
// the runfleet binaries built from this checkout, against a real
// redis-server and a real MinIO of its own (the events block starts its
// MinIO itself, with a webhook target), substituting only free ports and
// test credentials for the README's example ones.
package walkthrough

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// block returns the shell code of the README block marked name.
func block(t *testing.T, readme, name string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)<!-- walkthrough:" + name + " -->\\s*```sh\\n(.*?)```\\s*<!-- /walkthrough -->")
	m := re.FindStringSubmatch(readme)
	require.NotNil(t, m, "README has no walkthrough block %q", name)
	return m[1]
}

// substitute replaces each old with new in code, failing if old is absent:
// the README's example addresses and credentials become the test servers'.
func substitute(t *testing.T, code string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		require.Contains(t, code, pairs[i], "the README block changed; update the test's substitutions")
		code = strings.ReplaceAll(code, pairs[i], pairs[i+1])
	}
	return code
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// blockEnv is the whole environment of a block: a fresh HOME, path
// (directories) before $PATH, and Redis at redisURL.
func blockEnv(t *testing.T, home, path, redisURL string) []string {
	t.Helper()
	return []string{
		"HOME=" + home,
		"PATH=" + path + string(os.PathListSeparator) + os.Getenv("PATH"),
		"RUNFLEET_REDIS_URL=" + redisURL,
		// The Go caches stay where they are: a new HOME would mean a cold build.
		"GOCACHE=" + goEnv(t, "GOCACHE"), "GOMODCACHE=" + goEnv(t, "GOMODCACHE"), "GOPATH=" + goEnv(t, "GOPATH"),
		"GOPROXY=" + goEnv(t, "GOPROXY"), "GOTOOLCHAIN=local",
	}
}

// runBlock runs a block's code with bash -euo pipefail in dir, and returns
// its output, failing the test when it fails. Whatever the block leaves
// running is killed.
func runBlock(t *testing.T, dir string, env []string, name, code string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", code)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Whatever the block left running (a runner after a failure) goes too.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	require.NoError(t, err, "README block %q failed:\n%s", name, buf.String())
	return buf.String()
}

func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a workflow for two platforms")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	fileBlock := block(t, string(readme), "file")
	s3Block := block(t, string(readme), "s3")

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./cmd/runfleet", "./cmd/runnerd")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	r := testenv.NewRedis(t)
	m := testenv.NewMinIO(t)
	home := t.TempDir()
	env := blockEnv(t, home, bin, r.URL())
	run := func(name, code string) string {
		t.Helper()
		return runBlock(t, root, env, name, code)
	}

	got := run("file", fileBlock)
	require.Contains(t, got, "completed: 1/1 tasks done")
	require.Contains(t, got, `msg="worker: `, "the task ran in a worker process of the release runner")
	require.FileExists(t, filepath.Join(home, "hello", "dist", "hello.tar.zst"))
	stored, err := filepath.Glob(filepath.Join(home, ".local", "share", "runfleet", "store", "releases", "hello", "*.tar.zst"))
	require.NoError(t, err)
	require.Len(t, stored, 1, "one release in the default file store")

	got = run("s3", substitute(t, s3Block,
		"127.0.0.1:9000", m.Addr,
		"AWS_ACCESS_KEY_ID=minioadmin", "AWS_ACCESS_KEY_ID="+m.AccessKey,
		"AWS_SECRET_ACCESS_KEY=minioadmin", "AWS_SECRET_ACCESS_KEY="+m.SecretKey))
	require.Contains(t, got, "created store s3://releases")
	require.Contains(t, got, "completed: 1/1 tasks done")
	objs, err := m.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("releases")})
	require.NoError(t, err)
	require.NotEmpty(t, objs.Contents, "the release went to MinIO")
}

func TestReadmeEventsWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and the bench runner, starts MinIO")
	}
	minio, err := testenv.MinIOPath()
	if err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the events walkthrough signs its S3 requests with curl, which is not installed (apt-get install curl)")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	code := block(t, string(readme), "events")

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./cmd/runfleet", "./examples/bench")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	r := testenv.NewRedis(t)
	gatewayPort, err := testenv.FreePort()
	require.NoError(t, err)
	minioPort, err := testenv.FreePort()
	require.NoError(t, err)
	gateway, s3 := "127.0.0.1:"+strconv.Itoa(gatewayPort), "127.0.0.1:"+strconv.Itoa(minioPort)
	env := blockEnv(t, t.TempDir(), bin+string(os.PathListSeparator)+filepath.Dir(minio), r.URL())
	env = append(env, "TMPDIR="+t.TempDir()) // the block's mktemp -d
	got := runBlock(t, root, env, "events", substitute(t, code, "127.0.0.1:8080", gateway, "127.0.0.1:9000", s3))

	require.Contains(t, got, "gateway listening on http://"+gateway)
	require.Regexp(t, `(?m)^\S+\s+ingest incoming/run 7\+8/scan\.tif\s+scans\s+completed\s`, got,
		"the upload made a job, with the decoded key, that the runner completed")
	require.Regexp(t, `(?m)^\S+\s+heartbeat \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+scans\s`, got, "the cron automation made jobs")
	byHand := regexp.MustCompile(`\{"id":"([^"]+)","name":"by hand".*\n(\d{3})\n`).FindAllStringSubmatch(got, -1)
	require.Len(t, byHand, 2, "two answers to the API submission:\n%s", got)
	require.Equal(t, byHand[0][1], byHand[1][1], "one job for one Idempotency-Key")
	require.Equal(t, []string{"201", "200"}, []string{byHand[0][2], byHand[1][2]})

	wc, err := workflows.NewClient(t.Context(), workflows.WithRedisURL(r.URL()))
	require.NoError(t, err)
	defer wc.Close()
	jobs, err := wc.Jobs().List(t.Context(), workflows.ListOptions{Cluster: "scans", Limit: 1000})
	require.NoError(t, err)
	var ingest []workflows.Job
	ticks := map[string]bool{}
	for _, j := range jobs {
		if strings.HasPrefix(j.Name, "ingest ") {
			ingest = append(ingest, j)
		}
		if tick, ok := strings.CutPrefix(j.Name, "heartbeat "); ok {
			require.False(t, ticks[tick], "tick %s made one job", tick)
			ticks[tick] = true
		}
	}
	require.Len(t, ingest, 1, "one job for the one upload")
	tasks, err := wc.Jobs().Tasks(t.Context(), ingest[0].ID)
	require.NoError(t, err)
	require.Equal(t, "object scans/incoming/run 7+8/scan.tif tag=survey", tasks[0].Display,
		"the runner ran Ingest with the object's key")
}

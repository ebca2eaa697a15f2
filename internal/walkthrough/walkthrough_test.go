// Package walkthrough tests the README: it runs the release walkthrough's
// shell blocks exactly as written, with the runfleet binaries built from this
// checkout, against a real redis-server and a real MinIO of its own.
package walkthrough

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
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
	env := []string{
		"HOME=" + home,
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"RUNFLEET_REDIS_URL=" + r.URL(),
		// The Go caches stay where they are: a new HOME would mean a cold build.
		"GOCACHE=" + goEnv(t, "GOCACHE"), "GOMODCACHE=" + goEnv(t, "GOMODCACHE"), "GOPATH=" + goEnv(t, "GOPATH"),
		"GOPROXY=" + goEnv(t, "GOPROXY"), "GOTOOLCHAIN=local",
	}
	run := func(name, code string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", code)
		cmd.Dir = root
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

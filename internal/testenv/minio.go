package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/runfleet/runfleet/infra/images"
)

// MinIO is one MinIO server process started for a test or a demo, with a
// single drive in Dir/data and its output in Dir/minio.log.
type MinIO struct {
	Addr      string // host:port on loopback
	Dir       string // its directory
	AccessKey string // root user, MINIO_ROOT_USER
	SecretKey string // root password, MINIO_ROOT_PASSWORD

	env []string // extra KEY=value settings, after the defaults
	process
}

// Endpoint is the server's S3 API base URL.
func (m *MinIO) Endpoint() string { return "http://" + m.Addr }

// LogPath is the file the server's output goes to.
func (m *MinIO) LogPath() string { return filepath.Join(m.Dir, "minio.log") }

// MinIOPath finds the minio binary: $RUNFLEET_MINIO_BIN, then where `go
// install` puts it (`go tool task setup` installs it so: $GOBIN, else the
// first $GOPATH/bin), then $PATH.
func MinIOPath() (string, error) {
	return findGoBinary("RUNFLEET_MINIO_BIN", "minio",
		"minio not found: run `go tool task setup` (go installs the pinned MinIO into $(go env GOBIN) or $(go env GOPATH)/bin) or set RUNFLEET_MINIO_BIN")
}

// findGoBinary finds a program the setup tasks install: $envVar, then the
// Go bin directories, then $PATH; missing is the error otherwise.
func findGoBinary(envVar, name, missing string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		return p, nil
	}
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", errors.New(missing)
}

// goBinDirs lists where `go install` may have put binaries. `go env` sees
// settings made with `go env -w` too; the environment is the fallback
// when no go command is on PATH.
var goBinDirs = sync.OnceValue(func() []string {
	var dirs []string
	add := func(gobin, gopath string) {
		if gobin != "" {
			dirs = append(dirs, gobin)
		} else if first, _, _ := strings.Cut(gopath, string(os.PathListSeparator)); first != "" {
			dirs = append(dirs, filepath.Join(first, "bin"))
		}
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		if lines := strings.Split(string(out), "\n"); len(lines) >= 2 {
			add(lines[0], lines[1])
		}
	}
	home, _ := os.UserHomeDir()
	gopath := os.Getenv("GOPATH")
	if gopath == "" && home != "" {
		gopath = filepath.Join(home, "go")
	}
	add(os.Getenv("GOBIN"), gopath)
	return slices.Compact(dirs)
})

// StartMinIO starts a MinIO server in dir on a free loopback port and waits
// until it reports ready.
func StartMinIO(ctx context.Context, dir string) (*MinIO, error) {
	return StartMinIOEnv(ctx, dir)
}

// StartMinIOEnv is StartMinIO with extra KEY=value environment settings,
// which win over the defaults: a webhook notification target
// (MINIO_NOTIFY_WEBHOOK_ENABLE_<ID>=on, _ENDPOINT_<ID>, _AUTH_TOKEN_<ID>,
// _QUEUE_DIR_<ID>) or MINIO_REGION, which then appears in the target's ARN.
// The webhook target's endpoint need not be up at start: MinIO dials it
// only when it delivers. MinIO registers its targets in the background
// after it starts serving, so for a moment after this returns a bucket
// notification naming the target's ARN may be refused as unknown; retry.
func StartMinIOEnv(ctx context.Context, dir string, env ...string) (*MinIO, error) {
	bin, err := MinIOPath()
	if err != nil {
		return nil, err
	}
	var lastErr error
	// Another process may take the free port before MinIO binds it.
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		m := &MinIO{
			Addr:      "127.0.0.1:" + strconv.Itoa(port),
			Dir:       dir,
			AccessKey: "runfleet-test",
			SecretKey: "runfleet-test-secret",
			env:       env,
		}
		if lastErr = m.start(ctx, bin); lastErr == nil {
			return m, nil
		}
		if ctx.Err() != nil || !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func (m *MinIO) start(ctx context.Context, bin string) error {
	logf, err := os.Create(m.LogPath())
	if err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin, "server",
		"--address", m.Addr,
		"--certs-dir", filepath.Join(m.Dir, "certs"), // not ~/.minio
		filepath.Join(m.Dir, "data"))
	cmd.Dir = m.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(withoutMinIOEnv(os.Environ()),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", // no console listener
		"MINIO_UPDATE=off",  // no update check
		"MINIO_CI_CD=on",    // small buffer pool, data on the root disk is fine
		"MINIO_SCANNER_SPEED=slowest",
	)
	cmd.Env = append(cmd.Env, m.env...)
	done, err := m.launch(cmd)
	if err != nil {
		return fmt.Errorf("start minio: %w", err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		if m.ready(ctx) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("minio exited at start; %s", m.LogTail())
		case <-ctx.Done():
			m.Kill()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Kill()
			return fmt.Errorf("minio on %s not ready within 30s; %s", m.Addr, m.LogTail())
		}
	}
}

// ready reports whether the server serves S3 requests. /minio/health/ready
// answers 200 before the object layer and IAM are up (it only sets
// X-Minio-Server-Status), so an authenticated ListBuckets has the last word.
func (m *MinIO) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint()+"/minio/health/ready", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Minio-Server-Status") != "" {
		return false
	}
	_, err = m.Client().ListBuckets(ctx, &s3.ListBucketsInput{})
	return err == nil
}

// withoutMinIOEnv drops the caller's MINIO_* settings, which could change
// how the server starts.
func withoutMinIOEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MINIO_") {
			out = append(out, kv)
		}
	}
	return out
}

// LogTail is the end of the server's log, for failure messages.
func (m *MinIO) LogTail() string {
	if m.ctr != nil {
		m.ctr.saveLogs()
	}
	b, err := os.ReadFile(m.LogPath())
	if err != nil {
		return "no log: " + err.Error()
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return "log " + m.LogPath() + ":\n" + string(b)
}

// Client returns an S3 client for the server with its root credentials,
// talking straight to it (one attempt per request, path-style).
func (m *MinIO) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:     aws.String(m.Endpoint()),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		UsePathStyle:     true,
		RetryMaxAttempts: 1,
	})
}

// CreateBucket creates bucket name.
func (m *MinIO) CreateBucket(ctx context.Context, name string) error {
	if _, err := m.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		return fmt.Errorf("create bucket %s on minio %s: %w", name, m.Addr, err)
	}
	return nil
}

// NewBucket creates a bucket with a fresh random name for one test and
// returns the name.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test-" + hex.EncodeToString(b)
	if err := m.CreateBucket(context.Background(), name); err != nil {
		t.Fatalf("testenv: %v; %s", err, m.LogTail())
	}
	return name
}

// NewMinIO starts a MinIO server for one test in its own temporary
// directory and stops it when the test ends. It fails the test when minio
// is not installed, as NewRedis does for redis-server.
func NewMinIO(t testing.TB) *MinIO {
	t.Helper()
	return NewMinIOEnv(t)
}

// newMinIOContainer starts MinIO in a container of the runfleet/minio:dev
// image, configured as a local process would be, published on a free
// loopback port.
func newMinIOContainer(t testing.TB, dir string) (*MinIO, error) {
	t.Helper()
	ensureImage(t, "minio")
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &MinIO{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, AccessKey: "runfleet-test", SecretKey: "runfleet-test-secret"}
	c, err := startContainer(t, images.Ref("minio"), port, "9000/tcp", map[string]string{
		"MINIO_ROOT_USER":     m.AccessKey,
		"MINIO_ROOT_PASSWORD": m.SecretKey,
		"MINIO_CI_CD":         "on",
		"MINIO_SCANNER_SPEED": "slowest",
	}, []string{"server", "--address", ":9000", "/data"})
	if err != nil {
		return nil, err
	}
	c.logPath = m.LogPath()
	m.ctr = c
	deadline := time.Now().Add(60 * time.Second)
	for !m.ready(context.Background()) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("minio container on %s not ready within 60s; %s", m.Addr, m.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m, nil
}

// NewMinIOEnv is NewMinIO with extra environment settings (see
// StartMinIOEnv). With RUNFLEET_TESTENV=containers and no settings, the
// server runs in a container of the runfleet/minio:dev image (see
// BackendEnv). Settings stay on a local process: they name webhook targets
// on the host's loopback, which a container cannot reach.
func NewMinIOEnv(t testing.TB, env ...string) *MinIO {
	t.Helper()
	if useContainers(t) {
		if len(env) == 0 {
			m, err := newMinIOContainer(t, t.TempDir())
			if err != nil {
				t.Fatalf("testenv: %v", err)
			}
			t.Cleanup(m.Stop)
			return m
		}
		t.Logf("testenv: MinIO with settings %v runs as a local process: a container cannot reach webhook targets on the host's loopback", env)
	}
	m, err := StartMinIOEnv(context.Background(), t.TempDir(), env...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

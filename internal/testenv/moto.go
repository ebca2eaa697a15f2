package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Moto is a moto_server process: the AWS API emulator the control-plane
// tests (infra, schedule sync, secrets) deploy against. It keeps its state
// in memory, so each test gets a server of its own.
type Moto struct {
	// Endpoint is the server's URL, http://127.0.0.1:<port>.
	Endpoint string
	// LogPath is the server's combined output.
	LogPath string
}

// MotoServerPath finds moto_server: $RUNFLEET_MOTO_SERVER, then $PATH, then
// pyenv's shims, where a pip install for the user's Python leaves it.
func MotoServerPath() (string, error) {
	if p := os.Getenv("RUNFLEET_MOTO_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".pyenv", "shims", "moto_server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// NewMoto starts moto_server on a free loopback port until the test ends.
func NewMoto(t testing.TB) *Moto {
	t.Helper()
	bin, err := MotoServerPath()
	if err != nil {
		t.Fatal("moto_server not found: run `go tool task setup` (pip install 'moto[server]') or set RUNFLEET_MOTO_SERVER")
	}
	// Another process (a parallel package's server) may take the free port
	// before moto binds it: moto then exits, and the port answers as
	// something else. Try another port.
	var lastErr error
	for range 3 {
		m, err := startMoto(t, bin)
		if err == nil {
			return m
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return nil
}

// startMoto starts moto_server once, on a free port, and waits until moto
// itself answers there.
func startMoto(t testing.TB, bin string) (*Moto, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &Moto{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), LogPath: filepath.Join(t.TempDir(), "moto.log")}
	logf, err := os.Create(m.LogPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: moto_server may be a pyenv shim that forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		_ = logf.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if isMoto(m.Endpoint) {
			t.Cleanup(stop)
			return m, nil
		}
		select {
		case <-done:
			stop()
			return nil, fmt.Errorf("moto_server exited before answering on %s; its log: %s", m.Endpoint, m.LogPath)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("moto_server did not answer on %s within 60s; its log: %s", m.Endpoint, m.LogPath)
		}
	}
}

// isMoto reports whether moto answers at endpoint: its dashboard, not
// merely some HTTP server.
func isMoto(endpoint string) bool {
	resp, err := http.Get(endpoint + "/moto-api/")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return err == nil && resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte("Moto"))
}

// Config is an AWS SDK configuration for the server, with moto's fake
// credentials and region us-east-1.
func (m *Moto) Config() aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(m.Endpoint),
		HTTPClient:   awshttp.NewBuildableClient(),
	}
}

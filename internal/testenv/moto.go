package testenv

import (
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
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m := &Moto{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), LogPath: filepath.Join(t.TempDir(), "moto.log")}
	logf, err := os.Create(m.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: moto_server may be a pyenv shim that forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		_ = logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(m.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return m
		}
		select {
		case <-done:
			t.Fatalf("moto_server exited before answering; its log: %s", m.LogPath)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not answer on %s within 60s", m.Endpoint)
		}
	}
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

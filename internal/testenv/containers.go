package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"

	"github.com/runfleet/runfleet/infra/images"
)

// BackendEnv chooses how NewRedis and NewMinIO start their servers:
// unset or "processes" for local processes (the default), "containers" for
// containers of the local images `go tool task images` builds (built here
// when missing), through testcontainers-go. The Start* forms, which have no
// test to clean up after, always start local processes.
const BackendEnv = "RUNFLEET_TESTENV"

// useContainers reports whether tests asked for the containers backend,
// and fails t on a value it does not know.
func useContainers(t testing.TB) bool {
	t.Helper()
	switch v := os.Getenv(BackendEnv); v {
	case "", "processes":
		return false
	case "containers":
		return true
	default:
		t.Fatalf("testenv: %s=%q: want processes or containers", BackendEnv, v)
		return false
	}
}

// containerStartTimeout bounds one container start, image build excluded.
const containerStartTimeout = 60 * time.Second

var (
	imagesMu  sync.Mutex
	imagesErr = map[string]error{} // per image, once it was ensured
)

// ensureImage builds image name (see package images) once per test binary
// when the engine lacks it, and skips t when no Docker engine answers.
func ensureImage(t testing.TB, name string) {
	t.Helper()
	imagesMu.Lock()
	err, done := imagesErr[name]
	if !done {
		err = buildMissing(name)
		imagesErr[name] = err
	}
	imagesMu.Unlock()
	if errors.Is(err, images.ErrNoEngine) {
		t.Skipf("testenv: %s=containers needs a Docker engine: %v", BackendEnv, err)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

func buildMissing(name string) error {
	// Ryuk, testcontainers' reaper, is an image from a registry, which may
	// be unreachable; t.Cleanup removes what a test starts.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	b, err := images.NewBuilder(ctx, images.Config{})
	if err != nil {
		return err
	}
	defer b.Close()
	return b.Ensure(ctx, name)
}

// serverContainer is a Redis or MinIO server in a container whose port is
// published on a fixed loopback port, so a restarted container answers at
// the same address.
type serverContainer struct {
	ctr     testcontainers.Container
	logPath string // where Stop and saveLogs copy the container's output
}

// startContainer starts image with args, publishing containerPort on
// 127.0.0.1:hostPort, and removes it (and its volumes) when t ends.
func startContainer(t testing.TB, image string, hostPort int, containerPort string, env map[string]string, args []string) (*serverContainer, error) {
	t.Helper()
	port, err := network.ParsePort(containerPort)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        image,
			Cmd:          args,
			Env:          env,
			ExposedPorts: []string{containerPort},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(hostPort)}}}
			},
		},
		Started: true,
	})
	if ctr != nil {
		t.Cleanup(func() {
			if err := testcontainers.TerminateContainer(ctr, testcontainers.RemoveVolumes()); err != nil {
				t.Logf("testenv: remove container %s: %v", image, err)
			}
		})
	}
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", image, err)
	}
	return &serverContainer{ctr: ctr}, nil
}

// start starts the stopped container again.
func (c *serverContainer) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, containerStartTimeout)
	defer cancel()
	if err := c.ctr.Start(ctx); err != nil {
		return fmt.Errorf("restart container %s: %w", c.ctr.GetContainerID()[:12], err)
	}
	return nil
}

// stop stops the container (SIGTERM, then SIGKILL after 5 s), keeping its
// output in logPath.
func (c *serverContainer) stop() {
	c.saveLogs()
	timeout := 5 * time.Second
	_ = c.ctr.Stop(context.Background(), &timeout)
}

// kill stops the container abruptly, as a crash would.
func (c *serverContainer) kill() {
	c.saveLogs()
	timeout := time.Duration(0)
	_ = c.ctr.Stop(context.Background(), &timeout)
}

// saveLogs copies the container's output so far to logPath.
func (c *serverContainer) saveLogs() {
	if c.logPath == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.ctr.Logs(ctx)
	if err != nil {
		return
	}
	defer r.Close()
	f, err := os.Create(c.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, r)
}

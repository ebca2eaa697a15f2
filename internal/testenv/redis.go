// Package testenv starts the real servers tests talk to: redis-server processes
// on free loopback ports, each with its own data directory. Nothing here fakes a
// server; tests that want faults wrap the real thing.
package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runfleet/runfleet/infra/images"
)

// Redis is one redis-server process started for a test or a demo.
type Redis struct {
	Addr string // host:port on loopback
	Dir  string // its working and data directory

	args []string
	process
}

// URL is the redis:// address of the server, database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// RedisServerPath finds redis-server (see images.RedisServerPath).
func RedisServerPath() (string, error) { return images.RedisServerPath() }

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartRedis starts redis-server in dir on a free loopback port and waits until
// it answers PING. extra are additional `--name value` config arguments.
func StartRedis(ctx context.Context, dir string, extra ...string) (*Redis, error) {
	// A port FreePort found free may be taken by another test's server
	// before ours binds it: then try another.
	for attempt := 1; ; attempt++ {
		r, err := startRedisOnce(ctx, dir, extra)
		if errors.Is(err, errPortTaken) && attempt < 5 {
			continue
		}
		return r, err
	}
}

// errPortTaken means another server answered on the port a new server was
// meant to listen on.
var errPortTaken = errors.New("port taken by another server")

func startRedisOnce(ctx context.Context, dir string, extra []string) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir}
	r.args = append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
		// Slow-log every command over 1 ms so benchmarks can report the slowest.
		"--slowlog-log-slower-than", "1000",
		"--slowlog-max-len", "1024",
		"--latency-monitor-threshold", "1",
	}, extra...)
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Redis) start(ctx context.Context) error {
	if r.ctr != nil {
		if err := r.ctr.start(ctx); err != nil {
			return err
		}
		return waitRedis(ctx, r.Addr, 30*time.Second)
	}
	bin, err := RedisServerPath()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, r.args...)
	cmd.Dir = r.Dir
	done, err := r.launch(cmd)
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(r.Addr); err == nil {
			// Answered, but by ours? A server another test started on the
			// same port would answer while ours fails to bind.
			if pid, err := serverPID(r.Addr); err == nil && pid != cmd.Process.Pid {
				_ = cmd.Process.Kill()
				<-done
				return fmt.Errorf("redis-server on %s: %w (pid %d)", r.Addr, errPortTaken, pid)
			}
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start; see %s", filepath.Join(r.Dir, "redis.log"))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within 10s", r.Addr)
		}
	}
}

// newRedisContainer starts redis-server in a container, configured as
// StartRedis configures a process, published on a free loopback port.
func newRedisContainer(t testing.TB, dir string, extra []string) (*Redis, error) {
	t.Helper()
	ensureImage(t, "redis")
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir}
	r.args = append([]string{
		"--port", "6379",
		"--bind", "0.0.0.0",
		"--dir", "/data",
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--slowlog-log-slower-than", "1000",
		"--slowlog-max-len", "1024",
		"--latency-monitor-threshold", "1",
	}, extra...)
	c, err := startContainer(t, images.Ref("redis"), port, "6379/tcp", nil, r.args)
	if err != nil {
		return nil, err
	}
	c.logPath = filepath.Join(dir, "redis.log")
	r.ctr = c
	if err := waitRedis(context.Background(), r.Addr, 30*time.Second); err != nil {
		c.saveLogs()
		return nil, fmt.Errorf("%w; see %s", err, c.logPath)
	}
	return r, nil
}

// waitRedis waits until the server at addr answers PING.
func waitRedis(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis on %s did not answer PING within %s: %w", addr, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ping speaks just enough RESP to check the server is up, so this package
// does not depend on a Redis client.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

// serverPID asks the server at addr for its process id (INFO server).
func serverPID(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
}

// Restart starts the server again on the same port and directory.
func (r *Redis) Restart(ctx context.Context) error { return r.start(ctx) }

// NewRedis starts a redis-server for one test in its own temporary directory
// and stops it when the test ends. With RUNFLEET_TESTENV=containers it runs
// in a container of the runfleet/redis:dev image instead (see BackendEnv);
// extra arguments then name paths inside the container.
func NewRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	if useContainers(t) {
		r, err := newRedisContainer(t, t.TempDir(), extra)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		t.Cleanup(r.Stop)
		return r
	}
	r, err := StartRedis(context.Background(), t.TempDir(), extra...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// RedisCluster is a Redis Cluster of local redis-server processes, masters
// only, for tests that prove every multi-key step stays on one slot.
type RedisCluster struct {
	Nodes []*Redis
}

// Addrs lists the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// NewRedisCluster starts n cluster-enabled redis-servers (n >= 3), joins them
// with `redis-cli --cluster create`, waits until the cluster is ok, and stops
// them when the test ends.
func NewRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	c := &RedisCluster{}
	for i := range n {
		dir := filepath.Join(t.TempDir(), strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		r, err := StartRedis(context.Background(), dir, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000")
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		t.Cleanup(r.Stop)
		c.Nodes = append(c.Nodes, r)
	}
	cli, err := redisCLIPath()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, node := range c.Nodes {
		host, port, _ := net.SplitHostPort(node.Addr)
		for {
			out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: redis cluster node %s not ok within 20s:\n%s", node.Addr, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

func redisCLIPath() (string, error) {
	if p, err := exec.LookPath("redis-cli"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-cli"); err == nil {
		return "/usr/bin/redis-cli", nil
	}
	return "", errors.New("redis-cli not found: run `go tool task setup` (Debian's redis-server brings redis-tools)")
}

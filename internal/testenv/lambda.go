package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Lambda is one AWS Lambda Runtime Interface Emulator process serving one
// function's bootstrap binary, as the provided.al2023 runtime would. The
// emulator starts the bootstrap at the first invocation (the cold start)
// and keeps it for the next ones (warm). Its output, and the function's
// stdout and stderr, go to Dir/rie.log.
type Lambda struct {
	Addr string // host:port of the emulator's invoke API on loopback
	Dir  string // its working directory (the function's too)

	http *http.Client
	process
}

// invokePath is where the emulator accepts invocations, as the Lambda
// Invoke API names them.
const invokePath = "/2015-03-31/functions/function/invocations"

// RIEPath finds the aws-lambda-rie binary: $RUNFLEET_RIE_BIN, then where
// `go install` puts it (`go tool task setup-rie` installs the pinned one
// there: $GOBIN, else the first $GOPATH/bin), then $PATH.
func RIEPath() (string, error) {
	return findGoBinary("RUNFLEET_RIE_BIN", "aws-lambda-rie",
		"aws-lambda-rie not found: run `go tool task setup-rie` (go installs the pinned emulator into $(go env GOBIN) or $(go env GOPATH)/bin) or set RUNFLEET_RIE_BIN")
}

// LogPath is the file the emulator's and the function's output go to.
func (l *Lambda) LogPath() string { return filepath.Join(l.Dir, "rie.log") }

// Log is everything the emulator and the function wrote so far.
func (l *Lambda) Log() string {
	b, err := os.ReadFile(l.LogPath())
	if err != nil {
		return "no log: " + err.Error()
	}
	return string(b)
}

// LogTail is the end of the log, for failure messages.
func (l *Lambda) LogTail() string {
	b := l.Log()
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := strings.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return "log " + l.LogPath() + ":\n" + b
}

// StartLambda runs bootstrap under the emulator on free loopback ports and
// stops both when the test ends. env is added to the environment the
// emulator passes on to the function (it forwards its own environment,
// after defaults such as AWS_LAMBDA_FUNCTION_NAME=test_function). It fails
// the test when aws-lambda-rie is not installed.
func StartLambda(t testing.TB, bootstrap string, env []string) *Lambda {
	t.Helper()
	l, err := startLambda(context.Background(), t.TempDir(), bootstrap, env)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(l.Stop)
	return l
}

func startLambda(ctx context.Context, dir, bootstrap string, env []string) (*Lambda, error) {
	bin, err := RIEPath()
	if err != nil {
		return nil, err
	}
	bootstrap, err = filepath.Abs(bootstrap)
	if err != nil {
		return nil, err
	}
	var lastErr error
	// Another process may take a free port before the emulator binds it.
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		api, err := freeAddr()
		if err != nil {
			return nil, err
		}
		l := &Lambda{Addr: addr, Dir: dir, http: &http.Client{}}
		if lastErr = l.start(ctx, bin, api, bootstrap, env); lastErr == nil {
			return l, nil
		}
		if ctx.Err() != nil || !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// freeAddr is a free loopback host:port. The emulator's own defaults
// (8080, and 9001 for the runtime API) are busy on many machines, so both
// addresses are always given.
func freeAddr() (string, error) {
	for {
		port, err := FreePort()
		if err != nil {
			return "", err
		}
		if port != 9001 && port != 8080 {
			return "127.0.0.1:" + strconv.Itoa(port), nil
		}
	}
}

func (l *Lambda) start(ctx context.Context, bin, api, bootstrap string, env []string) error {
	logf, err := os.Create(l.LogPath())
	if err != nil {
		return fmt.Errorf("start aws-lambda-rie: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin,
		"--runtime-interface-emulator-address", l.Addr,
		"--runtime-api-address", api,
		bootstrap)
	cmd.Dir = l.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(withoutLambdaEnv(os.Environ()), env...)
	// Its own process group, so Stop can take the function with it even
	// when the emulator dies without reaping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done, err := l.launch(cmd)
	if err != nil {
		return fmt.Errorf("start aws-lambda-rie: %w", err)
	}

	// The emulator has no health route (any request to it is an
	// invocation, which would start the function early), so "ready" is
	// "accepts connections".
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", l.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("aws-lambda-rie exited at start; %s", l.LogTail())
		case <-ctx.Done():
			l.Stop()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.Stop()
			return fmt.Errorf("aws-lambda-rie on %s not listening within 10s; %s", l.Addr, l.LogTail())
		}
	}
}

// withoutLambdaEnv drops the caller's Lambda settings (a test run inside
// Lambda or CodeBuild has them), which would change the emulated function.
func withoutLambdaEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_LAMBDA_") && !strings.HasPrefix(kv, "_HANDLER=") && !strings.HasPrefix(kv, "LOG_LEVEL=") {
			out = append(out, kv)
		}
	}
	return out
}

// Stop kills the emulator and the function with SIGKILL: tests keep no
// state in them worth a graceful stop, and the emulator, stopped alone,
// may leave the function behind.
func (l *Lambda) Stop() {
	l.mu.Lock()
	cmd, done := l.cmd, l.done
	l.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	// The group is the emulator's pid (Setpgid), and while the emulator
	// has not been reaped nothing else can have that id.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Kill is Stop: a crash of the emulator is a crash of the function.
func (l *Lambda) Kill() { l.Stop() }

// FunctionError is the error a function returned (or the runtime reported
// for it) for one invocation. The emulator, like Lambda's Invoke API,
// answers it with status 200 and {"errorMessage", "errorType"}.
type FunctionError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func (e *FunctionError) Error() string {
	if e.Type == "" {
		return "function error: " + e.Message
	}
	return "function error (" + e.Type + "): " + e.Message
}

// Invoke invokes the function once with payload and returns its answer. A
// function error is a *FunctionError; a status other than 200 (the
// emulator's own failures, such as a crashed or timed-out function) is an
// error with the body.
func (l *Lambda) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+l.Addr+invokePath, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("invoke: emulator answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if fe := functionError(body); fe != nil {
		return body, fe
	}
	return body, nil
}

// functionError decodes body as a function error, or returns nil when it
// is an ordinary answer.
func functionError(body []byte) *FunctionError {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(trimmed, &probe) != nil {
		return nil
	}
	if _, ok := probe["errorMessage"]; !ok {
		if _, ok := probe["errorType"]; !ok {
			return nil
		}
	}
	var fe FunctionError
	_ = json.Unmarshal(trimmed, &fe)
	return &fe
}

// BuildFunction builds the Lambda function in package pkg (an import path,
// e.g. github.com/runfleet/runfleet/functions/submit, or a path relative to
// the test's directory) for the host's architecture, as it is deployed
// (-tags lambda.norpc, CGO_ENABLED=0, GOOS=linux), into a temporary
// directory, and returns the path of the bootstrap binary.
func BuildFunction(t testing.TB, pkg string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("testenv: the Lambda emulator runs linux binaries; this is %s", runtime.GOOS)
	}
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: build %s: %v\n%s", pkg, err, b)
	}
	return out
}

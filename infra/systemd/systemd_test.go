package systemd_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/cli"
)

// unit is a parsed unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s:%d: %q is not key=value", path, n, line)
			require.NotEmpty(t, section, "%s:%d: key outside a section", path, n)
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	require.NoError(t, sc.Err())
	return u
}

func (u unit) get(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	require.Len(t, vs, 1, "[%s] %s is set once", section, key)
	return vs[0]
}

// timespan reads a systemd time span: "90s", "2min", "1min 30s", "5".
func timespan(t *testing.T, s string) time.Duration {
	t.Helper()
	units := map[string]time.Duration{"": time.Second, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "sec": time.Second, "m": time.Minute, "min": time.Minute, "h": time.Hour, "hr": time.Hour}
	var total time.Duration
	parts := regexp.MustCompile(`(\d+)\s*([a-z]*)`).FindAllStringSubmatch(s, -1)
	require.NotEmpty(t, parts, "time span %q", s)
	for _, p := range parts {
		n, err := strconv.Atoi(p[1])
		require.NoError(t, err)
		u, ok := units[p[2]]
		require.True(t, ok, "time span %q: unit %q", s, p[2])
		total += time.Duration(n) * u
	}
	return total
}

func TestUnitIsHardenedAndStopsAfterTheGracePeriod(t *testing.T) {
	t.Parallel()
	u := parseUnit(t, "runnerd.service")
	want := map[string]string{
		"User":                  "runfleet",
		"Group":                 "runfleet",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"NoNewPrivileges":       "yes",
		"StateDirectory":        "runfleet",
		"CacheDirectory":        "runfleet",
		"EnvironmentFile":       "/etc/runfleet/runnerd.env",
		"Restart":               "on-failure",
		"KillMode":              "mixed",
		"KillSignal":            "SIGTERM",
		"CapabilityBoundingSet": "",
	}
	for k, v := range want {
		require.Equal(t, v, u.get(t, "Service", k), "[Service] %s", k)
	}
	require.Empty(t, u["Service"]["DynamicUser"], "a dedicated user, not a dynamic one")
	require.Empty(t, u["Service"]["PrivateDevices"], "PrivateDevices would hide the GPUs")
	require.Positive(t, timespan(t, u.get(t, "Service", "RestartSec")))
	require.Greater(t, timespan(t, u.get(t, "Service", "RestartMaxDelaySec")), timespan(t, u.get(t, "Service", "RestartSec")),
		"the restart delay grows")
	require.Equal(t, "multi-user.target", u.get(t, "Install", "WantedBy"))

	exec := strings.Fields(u.get(t, "Service", "ExecStart"))
	require.Equal(t, "/usr/local/bin/runnerd", exec[0], "the path install.sh installs to")
	flags := map[string]string{}
	for i := 1; i < len(exec)-1; i++ {
		if strings.HasPrefix(exec[i], "--") {
			flags[exec[i]] = exec[i+1]
		}
	}
	require.Equal(t, "${RUNFLEET_CLUSTER}", flags["--cluster"])
	require.Equal(t, "/var/cache/runfleet/releases", flags["--cache-dir"], "the cache is inside CacheDirectory")
	grace, err := time.ParseDuration(flags["--grace"])
	require.NoError(t, err, "--grace in ExecStart")
	stop := timespan(t, u.get(t, "Service", "TimeoutStopSec"))
	require.Greater(t, stop, grace, "TimeoutStopSec leaves runnerd its grace period and a margin to hand tasks back")
	require.GreaterOrEqual(t, stop-grace, 15*time.Second, "the margin covers handing back and stopping workers")

	// Every flag in ExecStart is one runnerd has.
	var help bytes.Buffer
	require.Equal(t, cli.ExitOK, cli.RunnerdMain(context.Background(), []string{"--help"}, cli.Streams{Out: &help, Err: &help}))
	for f := range flags {
		require.Contains(t, help.String(), "  "+f+" ", "runnerd has flag %s", f)
	}
	require.Contains(t, help.String(), "--gpus ", "RUNNERD_ARGS may give --gpus")
}

// systemd-analyze verify checks the unit as systemd reads it (keys, values,
// the executable), where systemd is installed.
func TestUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: cannot verify the unit with systemd here")
	}
	src, err := os.ReadFile("runnerd.service")
	require.NoError(t, err)
	self, err := os.Executable() // an executable that exists, for ExecStart
	require.NoError(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "runnerd.service")
	require.NoError(t, os.WriteFile(path, bytes.ReplaceAll(src, []byte("/usr/local/bin/runnerd"), []byte(self)), 0o644))
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		// systemd < 254 does not know the growing restart delay; it says so
		// and keeps RestartSec.
		require.Regexp(t, `Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\.$`, line,
			"systemd-analyze verify complains")
	}
}

func runInstall(t *testing.T, destdir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"install.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "DESTDIR="+destdir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestInstallScriptIsPOSIXShell(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("/bin/sh", "-n", "install.sh").CombinedOutput()
	require.NoError(t, err, "sh -n install.sh: %s", out)
	if dash, err := exec.LookPath("dash"); err == nil {
		out, err := exec.Command(dash, "-n", "install.sh").CombinedOutput()
		require.NoError(t, err, "dash -n install.sh: %s", out)
	}
}

func TestInstallScriptDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	binary := writeBinary(t, "v1")
	out, err := runInstall(t, root, "--dry-run", "--cluster", "gpu", "--gpus", "all", binary)
	require.NoError(t, err, out)
	require.Contains(t, out, "would run: install -D -m 0755 "+binary+" "+root+"/usr/local/bin/runnerd")
	require.Contains(t, out, "would write: "+root+"/etc/runfleet/runnerd.env (mode 0600, cluster gpu, --gpus all)")
	require.Contains(t, out, "would run: install -D -m 0644 ")
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Empty(t, entries, "a dry run writes nothing")
}

func TestInstallScriptInstallsOnceAndKeepsTheEnvFile(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	v1 := writeBinary(t, "v1")
	out, err := runInstall(t, root, "--cluster", "gpu", "--gpus", "0,2", v1)
	require.NoError(t, err, out)

	bin := filepath.Join(root, "usr/local/bin/runnerd")
	requireMode(t, bin, 0o755)
	requireSameFile(t, v1, bin)
	envFile := filepath.Join(root, "etc/runfleet/runnerd.env")
	requireMode(t, envFile, 0o600)
	env, err := os.ReadFile(envFile)
	require.NoError(t, err)
	require.Contains(t, string(env), "\nRUNFLEET_CLUSTER=gpu\n")
	require.Contains(t, string(env), "\nRUNNERD_ARGS=--gpus 0,2\n")
	for _, k := range []string{"RUNFLEET_REDIS_URL=", "RUNFLEET_STORE=", "AWS_ACCESS_KEY_ID="} {
		require.Contains(t, string(env), k)
	}
	unitFile := filepath.Join(root, "etc/systemd/system/runnerd.service")
	requireMode(t, unitFile, 0o644)
	requireSameFile(t, "runnerd.service", unitFile)

	// Again, with an edited env file and a new binary: the binary is
	// replaced, the operator's settings are kept.
	require.NoError(t, os.WriteFile(envFile, []byte("RUNFLEET_CLUSTER=edited\n"), 0o600))
	v2 := writeBinary(t, "v2")
	out, err = runInstall(t, root, "--cluster", "other", v2)
	require.NoError(t, err, out)
	require.Contains(t, out, "runnerd.env exists; left as it is")
	require.Contains(t, out, "runnerd.service is up to date")
	requireSameFile(t, v2, bin)
	env, err = os.ReadFile(envFile)
	require.NoError(t, err)
	require.Equal(t, "RUNFLEET_CLUSTER=edited\n", string(env))

	out, err = runInstall(t, root, v2)
	require.NoError(t, err, out)
	require.Contains(t, out, "usr/local/bin/runnerd is up to date")
	require.NotContains(t, out, "+ ", "nothing left to do")
}

func TestInstallScriptRefusesBadInput(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "GPU_hosts"}, `--cluster "GPU_hosts" is not a cluster slug`},
		{[]string{"--gpus", "0;rm"}, `--gpus "0;rm": want all`},
		{[]string{"--bogus"}, "unknown option --bogus"},
		{[]string{filepath.Join(root, "missing")}, "is not an executable file"},
	} {
		out, err := runInstall(t, root, c.args...)
		require.Error(t, err, "install.sh %v", c.args)
		require.Contains(t, out, c.want, "install.sh %v", c.args)
	}
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// writeBinary writes a small executable whose content depends on label.
func writeBinary(t *testing.T, label string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runnerd")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, "#!/bin/sh\necho %s\n", label), 0o755))
	return path
}

func requireMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, mode, st.Mode().Perm(), "mode of %s", path)
}

func requireSameFile(t *testing.T, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	require.NoError(t, err)
	b, err := os.ReadFile(got)
	require.NoError(t, err)
	require.Equal(t, string(a), string(b), "%s is a copy of %s", got, want)
}

package cli

import (
	"strings"
	"testing"

	"github.com/runfleet/runfleet/internal/jobgraph"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

func TestEveryCommandHasHelpWithExample(t *testing.T) {
	t.Parallel()
	a, _, _ := testApp("")
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden {
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(a.rootCmd(), nil)
	require.Greater(t, len(paths), 15)
	for _, p := range paths {
		r := runCLI(t, "", append(p, "--help")...)
		require.Equal(t, 0, r.code, "runfleet %v --help: %s", p, r.stderr)
		require.Contains(t, r.stdout, "\nExample:\n  runfleet", "runfleet %v --help", p)
		require.Contains(t, r.stdout, "Usage:", "runfleet %v --help", p)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	// No Redis runs at this URL: every case must fail before connecting.
	const dead = "redis://127.0.0.1:1/0"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"clustr"}, `unknown command "clustr" for "runfleet"; did you mean cluster?`},
		{[]string{"job", "bogus"}, `unknown command "bogus" for "runfleet job"`},
		{[]string{"cluster", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"cluster", "get"}, "missing SLUG"},
		{[]string{"cluster", "delete", "a", "b"}, `unexpected argument "b"`},
		{[]string{"job", "get"}, "missing ID"},
		{[]string{"job", "list", "--limit", "0"}, "--limit must be at least 1"},
		{[]string{"job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop"}, "missing required flag --version"},
		{[]string{"job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0",
			"--input", "{}", "--input-file", "x.json"}, "--input and --input-file are mutually exclusive"},
		{[]string{"job", "wait", "id", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
		{[]string{"job", "wait", "id", "--interval", "1ms"}, "--interval must be at least 10ms"},
		{[]string{"parallel", "--", "true"}, "missing -n N"},
		{[]string{"parallel", "-n", "2"}, "missing the command to run"},
		{[]string{"parallel", "-n", "0", "true"}, "-n must be 1 to 10000"},
	} {
		r := runCLI(t, "", append([]string{"--redis", dead}, tc.args...)...)
		require.Equal(t, ExitUsage, r.code, "runfleet %v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, "runfleet: "+tc.want, "runfleet %v", tc.args)
		require.Contains(t, r.stderr, "--help' for usage.", "runfleet %v", tc.args)
		require.Empty(t, r.stdout, "runfleet %v", tc.args)
	}
}

func TestBareGroupPrintsHelp(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "job")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "Available Commands:")
	require.Contains(t, r.stdout, "submit")
}

func TestRedisUnreachableGivesHint(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "--redis", "redis://:s3cret@127.0.0.1:1/0", "cluster", "list")
	require.Equal(t, ExitFailure, r.code)
	require.True(t, strings.HasPrefix(r.stderr, "runfleet: connect to redis: "), r.stderr)
	require.Contains(t, r.stderr, "hint: is Redis (7 or later) running at redis://:xxxxx@127.0.0.1:1/0?")
	require.NotContains(t, r.stderr, "s3cret")

	r = runCLI(t, "", "--redis", "http://u:s3cret@127.0.0.1/0", "cluster", "list")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: invalid redis url")
	require.Contains(t, r.stderr, "hint: use redis://")
	require.NotContains(t, r.stderr, "s3cret")
}

func TestCommas(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 99990: "99,990",
		1234567: "1,234,567", -1234: "-1,234"} {
		require.Equal(t, want, jobgraph.Commas(n))
	}
}

package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAutomationLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")

	r := f.run("automation", "list")
	require.Equal(t, 0, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no automations yet")
	require.Equal(t, "[]\n", f.ok("automation", "list", "--json").stdout)

	r = f.ok("automation", "create", "--name", "nightly", "--cluster", "dev", "--task", "Sleep", "--version", "v1.0",
		"--input", `{"ms": 5}`, "--cron", "0 2 * * *", "--timezone", "Europe/Berlin", "--max-retries", "2",
		"--notify", "https://hooks.example.com/runfleet")
	require.Regexp(t, `^created automation nightly \(id (\S+)\): cron "0 2 \* \* \*" \(Europe/Berlin\) submits Sleep v1\.0 to cluster dev\n$`, r.stdout)
	r = f.ok("automation", "create", "--name", "tiles", "--cluster", "dev", "--task", "Noop", "--version", "v1.0",
		"--storage", "s3://scans/incoming/", "--glob", "*.tif")
	require.Regexp(t, `^created automation tiles \(id \S+\): s3://scans/incoming/ \*\.tif submits Noop v1\.0 to cluster dev\n$`, r.stdout)

	r = f.ok("automation", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^ID\s+NAME\s+CLUSTER\s+TASK\s+TRIGGER\s+STATE\s+CREATED\s+AGE$`, lines[0])
	require.Regexp(t, `^\S+\s+nightly\s+dev\s+Sleep v1\.0\s+cron "0 2 \* \* \*" \(Europe/Berlin\)\s+active\s+\d{4}-`, lines[1])
	require.Regexp(t, `^\S+\s+tiles\s+dev\s+Noop v1\.0\s+s3://scans/incoming/ \*\.tif\s+active\s+\d{4}-`, lines[2])

	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.ok("automation", "list", "--json").stdout), &list))
	require.Len(t, list, 2)
	id := list[0]["id"].(string)
	require.Equal(t, "nightly", list[0]["name"])
	require.Equal(t, map[string]any{"ms": 5.0}, list[0]["input"])
	require.Equal(t, 2.0, list[0]["max_retries"])
	require.Equal(t, "https://hooks.example.com/runfleet", list[0]["notify"])
	require.Equal(t, "*.tif", list[1]["glob"])

	r = f.ok("automation", "get", "nightly")
	for _, want := range []string{"ID:           " + id + "\n", "Name:         nightly\n", "State:        active\n",
		"Task:         Sleep v1.0\n", `Input:        {"ms":5}` + "\n", "Max retries:  2\n", "Cron:         0 2 * * *\n",
		"Timezone:     Europe/Berlin\n", "Notify:       https://hooks.example.com/runfleet\n"} {
		require.Contains(t, r.stdout, want)
	}
	r = f.ok("automation", "get", "tiles")
	require.Contains(t, r.stdout, "Storage:      s3://scans/incoming/\n")
	require.Contains(t, r.stdout, "Glob:         *.tif\n")
	require.Contains(t, r.stdout, "Input:        {}\n")

	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.ok("automation", "get", id, "--json").stdout), &got))
	require.Equal(t, "nightly", got["name"])
	require.Equal(t, false, got["paused"])

	require.Equal(t, "paused automation nightly (id "+id+"); resume it with: runfleet automation resume nightly\n",
		f.ok("automation", "pause", "nightly").stdout)
	require.Contains(t, f.ok("automation", "get", id).stdout, "State:        paused\n")
	require.Regexp(t, `(?m)^\S+\s+nightly\s.*\spaused\s`, f.ok("automation", "list").stdout)
	require.Equal(t, "resumed automation nightly (id "+id+")\n", f.ok("automation", "resume", id).stdout)
	require.Contains(t, f.ok("automation", "get", "nightly").stdout, "State:        active\n")

	require.Equal(t, "deleted automation nightly (id "+id+")\n", f.ok("automation", "delete", "nightly").stdout)
	for _, verb := range []string{"get", "pause", "resume", "delete"} {
		r = f.run("automation", verb, "nightly")
		require.Equal(t, ExitFailure, r.code, verb)
		require.Equal(t, "runfleet: automation not found: \"nightly\" (see runfleet automation list)\n", r.stderr, verb)
	}
	require.NoError(t, json.Unmarshal([]byte(f.ok("automation", "list", "--json").stdout), &list))
	require.Len(t, list, 1)
}

func TestAutomationCreateRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")
	base := []string{"automation", "create", "--name", "a", "--cluster", "dev", "--task", "Noop", "--version", "v1.0"}
	for _, tc := range []struct {
		name  string
		extra []string
		code  int
		want  string
	}{
		{"both triggers", []string{"--cron", "@hourly", "--storage", "s3://b/p"}, ExitUsage,
			"runfleet: --cron and --storage are mutually exclusive; give one trigger\n"},
		{"no trigger", nil, ExitUsage, "runfleet: missing the trigger: give --cron EXPR or --storage s3://BUCKET/PREFIX\n"},
		{"timezone without cron", []string{"--storage", "s3://b/p", "--timezone", "UTC"}, ExitUsage, "runfleet: --timezone needs --cron\n"},
		{"glob without storage", []string{"--cron", "@hourly", "--glob", "*.tif"}, ExitUsage, "runfleet: --glob needs --storage\n"},
		{"negative retries", []string{"--cron", "@hourly", "--max-retries", "-1"}, ExitUsage, "runfleet: --max-retries must not be negative, got -1\n"},
		{"input not JSON", []string{"--cron", "@hourly", "--input", "{x"}, ExitUsage, "runfleet: --input must be a JSON object: invalid character 'x'"},
		{"input an array", []string{"--cron", "@hourly", "--input", "[1]"}, ExitUsage, "runfleet: --input must be a JSON object: json: cannot unmarshal array"},
		{"input null", []string{"--cron", "@hourly", "--input", "null"}, ExitUsage, "runfleet: --input must be a JSON object, got null\n"},
		{"bad cron text", []string{"--cron", "every day"}, ExitFailure,
			`runfleet: create automation "a": cron "every day": expected 5 fields`},
		{"bad cron field", []string{"--cron", "0 25 * * *"}, ExitFailure, `runfleet: create automation "a": cron "0 25 * * *": hour field "25"`},
		{"bad timezone", []string{"--cron", "@daily", "--timezone", "Mars/Olympus"}, ExitFailure,
			`runfleet: create automation "a": timezone "Mars/Olympus": not a known IANA timezone`},
		{"bad storage", []string{"--storage", "https://b/p"}, ExitFailure, `runfleet: create automation "a": storage "https://b/p": want s3://bucket/prefix`},
		{"bad glob", []string{"--storage", "s3://b/p", "--glob", "[x"}, ExitFailure, `runfleet: create automation "a": glob "[x": `},
		{"bad notify", []string{"--cron", "@daily", "--notify", "ftp://x"}, ExitFailure, `runfleet: create automation "a": notify URL "ftp://x"`},
		{"unknown cluster", []string{"--cron", "@daily", "--cluster", "nope"}, ExitFailure, `runfleet: create automation "a": cluster not found: "nope"`},
		{"unknown task", []string{"--cron", "@daily", "--task", "Nope"}, ExitFailure, `runfleet: create automation "a": `},
	} {
		r := f.run(append(append([]string{}, base...), tc.extra...)...)
		require.Equal(t, tc.code, r.code, "%s: %s", tc.name, r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, tc.want), "%s: %s", tc.name, r.stderr)
		require.Empty(t, r.stdout, tc.name)
	}
	r := f.run("automation", "create", "--cluster", "dev", "--task", "Noop", "--version", "v1.0", "--cron", "@daily")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "runfleet: missing required flag --name\n")
	require.Equal(t, "[]\n", f.ok("automation", "list", "--json").stdout, "nothing was created")
}

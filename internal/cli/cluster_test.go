package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)

	r := f.run("cluster", "list")
	require.Equal(t, 0, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no clusters yet")
	require.Equal(t, "[]\n", f.ok("cluster", "list", "--json").stdout)

	require.Equal(t, "created cluster dev (Dev boxes)\n", f.ok("cluster", "create", "dev", "--name", "Dev boxes").stdout)
	require.Equal(t, "created cluster gpu (gpu)\n", f.ok("cluster", "create", "gpu").stdout)

	r = f.run("cluster", "create", "dev")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: cluster already exists: \"dev\"\n", r.stderr)

	r = f.ok("cluster", "get", "dev")
	require.Contains(t, r.stdout, "Slug:     dev\n")
	require.Contains(t, r.stdout, "Name:     Dev boxes\n")
	require.Contains(t, r.stdout, "Created:  ")

	var cl map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.ok("cluster", "get", "dev", "--json").stdout), &cl))
	require.Equal(t, "dev", cl["slug"])
	require.Equal(t, "Dev boxes", cl["name"])
	require.NotEmpty(t, cl["created_at"])

	r = f.ok("cluster", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^SLUG\s+NAME\s+CREATED\s+AGE$`, lines[0])
	require.Regexp(t, `^dev\s+Dev boxes\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d+s$`, lines[1])
	require.Regexp(t, `^gpu\s+gpu\s`, lines[2])

	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.ok("cluster", "list", "--json").stdout), &list))
	require.Len(t, list, 2)
	require.Equal(t, "gpu", list[1]["slug"])

	require.Equal(t, "deleted cluster dev\n", f.ok("cluster", "delete", "dev").stdout)
	r = f.run("cluster", "get", "dev")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: cluster not found: \"dev\" (create it with `runfleet cluster create dev`)\n", r.stderr)
	require.Empty(t, r.stdout)

	r = f.run("cluster", "delete", "dev")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "cluster not found")
	require.Equal(t, 1, strings.Count(r.stderr, "runfleet cluster create"), "the hint is not repeated")
}

func TestClusterBadSlug(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, slug := range []string{"Dev", "-dev", "dev_1", "dev.prod", strings.Repeat("a", 101)} {
		for _, verb := range []string{"create", "get", "delete"} {
			r := f.run("cluster", verb, "--", slug)
			require.Equal(t, ExitFailure, r.code, "cluster %s %q", verb, slug)
			require.Contains(t, r.stderr, "runfleet: invalid cluster slug \""+slug+"\": use 1 to 100 lowercase letters, digits and dashes")
			require.Empty(t, r.stdout)
		}
	}
	require.Equal(t, "[]\n", f.ok("cluster", "list", "--json").stdout, "nothing was created")
}

package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenCreateListRevoke(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.cluster("staging")

	r := f.run("token", "list")
	require.Equal(t, 0, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no tokens yet")
	require.Equal(t, "[]\n", f.ok("token", "list", "--json").stdout)

	r = f.ok("token", "create", "--name", "ci", "--scope", "submit", "--cluster", "dev", "--cluster", "staging")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, `^created token ci \(id \S+, scope submit, clusters dev,staging, 50 requests/s, burst 100\)$`, lines[0])
	require.Contains(t, lines[1], "shown only this once")
	secret := lines[2]
	require.Regexp(t, `^rf_[A-Za-z0-9_-]{43}$`, secret, "the token is the last line")
	require.Equal(t, 1, strings.Count(r.stdout, secret))
	require.Empty(t, r.stderr)

	admin := f.newToken("admin", "admin", "--rate", "2.5", "--burst", "5")
	require.NotEqual(t, secret, admin)

	r = f.ok("token", "list")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^ID\s+NAME\s+SCOPE\s+CLUSTERS\s+RATE\s+BURST\s+CREATED\s+AGE$`, lines[0])
	require.Regexp(t, `^\S+\s+admin\s+admin\s+all\s+2\.5/s\s+5\s+\d{4}-`, lines[1], "by name")
	require.Regexp(t, `^\S+\s+ci\s+submit\s+dev,staging\s+50/s\s+100\s+\d{4}-`, lines[2])

	r = f.ok("token", "list", "--json")
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list, 2)
	require.Equal(t, "ci", list[1]["name"])
	require.Equal(t, []any{"dev", "staging"}, list[1]["clusters"])
	require.Equal(t, []any{}, list[0]["clusters"])
	for _, tok := range list {
		require.NotContains(t, tok, "hash")
		require.ElementsMatch(t, []string{"id", "name", "scope", "clusters", "rate", "burst", "created_at"}, keys(tok))
	}
	for _, s := range []string{secret, admin} {
		require.NotContains(t, f.ok("token", "list").stdout, s)
		require.NotContains(t, r.stdout, s)
		require.NotContains(t, r.stdout, s[3:])
	}

	id := list[1]["id"].(string)
	require.Equal(t, "revoked token ci (id "+id+")\n", f.ok("token", "revoke", id).stdout)
	require.Equal(t, "revoked token admin (id "+list[0]["id"].(string)+")\n", f.ok("token", "revoke", "admin").stdout)
	require.Equal(t, "[]\n", f.ok("token", "list", "--json").stdout)

	r = f.run("token", "revoke", "ci")
	require.Equal(t, ExitFailure, r.code)
	require.Equal(t, "runfleet: token not found: \"ci\" (see runfleet token list)\n", r.stderr)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTokenCreateRefusesBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--scope", "read"}, ExitUsage, "runfleet: missing required flag --name\n"},
		{[]string{"--name", "x"}, ExitUsage, "runfleet: missing required flag --scope (read, submit, admin)\n"},
		{[]string{"--name", "x", "--scope", "write"}, ExitUsage, `runfleet: --scope must be one of read, submit, admin, got "write"` + "\n"},
		{[]string{"--name", "x", "--scope", "read", "--rate", "-1"}, ExitUsage, "runfleet: --rate must not be negative, got -1\n"},
		{[]string{"--name", "x", "--scope", "read", "--burst", "-1"}, ExitUsage, "runfleet: --burst must not be negative, got -1\n"},
		{[]string{"--name", "x", "--scope", "read", "--cluster", "nope"}, ExitFailure, `runfleet: create token: cluster not found`},
		{[]string{"--name", "x", "--scope", "read", "--cluster", "Bad_Slug"}, ExitFailure, `runfleet: create token: invalid cluster slug "Bad_Slug"`},
	} {
		r := f.run(append([]string{"token", "create"}, tc.args...)...)
		require.Equal(t, tc.code, r.code, "%v: %s", tc.args, r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, tc.want), "%v: %s", tc.args, r.stderr)
		require.Empty(t, r.stdout, "%v: no token printed", tc.args)
	}
	require.Equal(t, "[]\n", f.ok("token", "list", "--json").stdout, "nothing was created")

	f.newToken("ci", "read")
	r := f.run("token", "create", "--name", "ci", "--scope", "read")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: create token: ")
	require.Contains(t, r.stderr, `"ci"`)
	require.Empty(t, r.stdout)
}

func TestTokenWorksAgainstTheAPIUntilRevoked(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	devOnly := f.newToken("dev-only", "submit", "--cluster", "dev")
	args := []string{"--redis", deadRedis, "--api", f.url, "--token", devOnly}
	r := runCLI(t, "", append(args, "job", "submit", "--cluster", "dev", "--name", "n", "--task", "Noop", "--version", "v1.0")...)
	require.Equal(t, 0, r.code, r.stderr)

	f.cluster("prod")
	f.register("prod")
	r = runCLI(t, "", append(args, "job", "submit", "--cluster", "prod", "--name", "n", "--task", "Noop", "--version", "v1.0")...)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `runfleet: api: 403 Forbidden: token "dev-only" may not submit to cluster "prod" (field "cluster")`)

	f.ok("token", "revoke", "dev-only")
	r = runCLI(t, "", append(args, "job", "list")...)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: api: 401 Unauthorized")
	require.Equal(t, 1, f.jobCount())
}

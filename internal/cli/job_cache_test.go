package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

func TestJobCacheCLI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.cluster("dev")
	f.register("dev")
	id := f.submit("dev", "Noop", `{}`)
	ctx := context.Background()
	dir := t.TempDir()
	c, err := workflows.NewClient(ctx, workflows.WithRedisURL(f.url), workflows.WithJobCache("file://"+dir))
	require.NoError(t, err)
	defer c.Close()
	jc := c.Jobs().Cache(id)
	require.NoError(t, jc.Put(ctx, "b", []byte("bee")))
	require.NoError(t, jc.Group("tiles").Put(ctx, "7", []byte("seven\n")))
	redis := f.client().Jobs().Cache(id)
	require.NoError(t, redis.Put(ctx, "in-redis", []byte("r")))

	require.Equal(t, "in-redis\n", f.ok("job", "cache", id, "ls").stdout, "the default cache is Redis")
	cache := "file://" + dir
	require.Equal(t, "b\ntiles/7\n", f.ok("job", "cache", id, "ls", "--cache", cache).stdout)
	var keys []string
	require.NoError(t, json.Unmarshal([]byte(f.ok("job", "cache", id, "ls", "--json", "--cache", cache).stdout), &keys))
	require.Equal(t, []string{"b", "tiles/7"}, keys)
	require.Equal(t, "seven\n", f.ok("job", "cache", id, "get", "tiles/7", "--cache", cache).stdout)
	out := filepath.Join(t.TempDir(), "v")
	f.ok("job", "cache", id, "get", "b", "--out", out, "--cache", cache)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "bee", string(b))

	r := f.run("job", "cache", id, "get", "nope", "--cache", cache)
	require.NotZero(t, r.code)
	require.Contains(t, r.stderr, `"nope": no value in the job cache`)
	r = f.run("job", "cache", id, "get", "../x", "--cache", cache)
	require.NotZero(t, r.code)
	require.Contains(t, r.stderr, `".." segment`)
	r = f.run("job", "cache", id, "rm", "b")
	require.NotZero(t, r.code)
	require.Contains(t, r.stderr, `unknown job cache operation "rm"`)
	r = f.run("job", "cache", id)
	require.NotZero(t, r.code)
	require.Contains(t, r.stderr, "then ls or get KEY")
	require.Equal(t, "[]\n", f.ok("job", "cache", "0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d", "ls", "--json").stdout)
}

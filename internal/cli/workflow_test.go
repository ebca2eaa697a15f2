package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
)

// releaseFixture is a Redis fixture plus a release store and artifacts.
type releaseFixture struct {
	*fixture
	store string // file:// URL
	dir   string // where artifacts are written
}

func newReleaseFixture(t *testing.T) *releaseFixture {
	t.Helper()
	return &releaseFixture{fixture: newFixture(t), store: "file://" + filepath.ToSlash(t.TempDir()), dir: t.TempDir()}
}

// wf runs `runfleet workflow ARGS`, with --store STORE for the commands
// that use the store.
func (f *releaseFixture) wf(args ...string) result {
	f.t.Helper()
	args = append([]string{"workflow"}, args...)
	if len(args) > 1 && slices.Contains([]string{"publish", "deploy", "list", "releases"}, args[1]) {
		args = append(args, "--store", f.store)
	}
	return f.run(args...)
}

// wfOK is wf requiring exit code 0.
func (f *releaseFixture) wfOK(args ...string) result {
	f.t.Helper()
	r := f.wf(args...)
	require.Equal(f.t, 0, r.code, "runfleet workflow %v\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
	return r
}

// artifact packs a release of workflow wf serving tasks ("Name@vM.m"),
// whose content also depends on variant, and returns its path and id.
func (f *releaseFixture) artifact(wf, variant string, tasks ...string) (string, string) {
	f.t.Helper()
	return packArtifact(f.t, f.dir, wf, variant, tasks...)
}

func packArtifact(t *testing.T, dir, wf, variant string, tasks ...string) (string, string) {
	t.Helper()
	m := artifacts.Manifest{FormatVersion: artifacts.FormatVersion, Workflow: wf,
		Entrypoints: map[string]string{artifacts.PlatformLinuxAMD64: "bin/linux-amd64/" + wf},
		Build:       artifacts.BuildInfo{GoVersion: "go1.26.4", SourceRevision: "3f2a9c1"}}
	for _, s := range tasks {
		name, version, ok := strings.Cut(s, "@")
		require.True(t, ok, s)
		m.Tasks = append(m.Tasks, artifacts.TaskID{Name: name, Version: version})
	}
	var buf bytes.Buffer
	id, err := artifacts.Pack(&buf, m, map[string]artifacts.File{
		"bin/linux-amd64/" + wf: {Data: []byte("#!/bin/sh\necho " + variant + "\n"), Executable: true},
	})
	require.NoError(t, err)
	path := filepath.Join(dir, wf+"-"+variant+".tar.zst")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return path, id
}

func (f *releaseFixture) releases(wf string) []map[string]any {
	f.t.Helper()
	var out []map[string]any
	r := f.wfOK("releases", wf, "--json")
	require.NoError(f.t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	return out
}

func TestWorkflowPublishIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	path, id := f.artifact("tiles", "one", "Resize@v1.2", "Crop@v0.1")

	r := f.wfOK("publish", path)
	require.Equal(t, id+"\n", r.stdout)
	require.Contains(t, r.stderr, "published workflow tiles release "+id)
	require.Contains(t, r.stderr, "unsigned")

	r = f.wfOK("publish", path)
	require.Equal(t, id+"\n", r.stdout)
	require.Contains(t, r.stderr, "already published")
	require.Len(t, f.releases("tiles"), 1, "one release however often it is published")

	// Signing on a later publish adds the signature to the same release.
	require.Equal(t, 0, f.ok("workflow", "keygen", "--out", filepath.Join(f.dir, "rel")).code)
	r = f.wfOK("publish", path, "--sign-key", filepath.Join(f.dir, "rel.key"), "--json")
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, id, out["id"])
	require.Equal(t, false, out["published"])
	require.NotEmpty(t, out["signature"])
	rels := f.releases("tiles")
	require.Len(t, rels, 1)
	require.Equal(t, out["signature"], rels[0]["signature"])

	r = f.wfOK("releases", "tiles")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	require.Regexp(t, `^RELEASE\s+PUBLISHED\s+SIZE\s+SIGNED\s+TASKS$`, lines[0])
	require.Regexp(t, `^`+id[:12]+`\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d+ B\s+yes\s+Crop@v0.1, Resize@v1.2$`, lines[1])

	// The signing key may come from the environment too; a bad one is named.
	r = f.wf("publish", path, "--sign-key", path)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "signing key "+path)
	require.Contains(t, r.stderr, "hint: create a key pair with: runfleet workflow keygen")
}

func TestWorkflowPublishRefusesBadArtifacts(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	bad := filepath.Join(f.dir, "bad.tar.zst")
	require.NoError(t, os.WriteFile(bad, []byte("garbage"), 0o644))
	r := f.wf("publish", bad)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "runfleet: publish: inspect artifact "+bad+": ")
	require.Contains(t, r.stderr, "unsafe or invalid archive")
	require.Empty(t, r.stdout)

	path, _ := f.artifact("tiles", "one", "Resize@v1.2")
	r = f.wf("publish", path, "--workflow", "thumbs")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, `is a release of workflow "tiles", not "thumbs"`)

	r = f.wf("publish", filepath.Join(f.dir, "missing.tar.zst"))
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "no such file")

	r = f.wfOK("list", "--json")
	require.Equal(t, "[]\n", r.stdout, "nothing was published")
}

func TestWorkflowKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "release")
	r := runCLI(t, "", "workflow", "keygen", "--out", prefix)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "wrote "+prefix+".key (private key: keep it secret) and "+prefix+".pub\npublic key: ")

	st, err := os.Stat(prefix + ".key")
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	key, err := os.ReadFile(prefix + ".key")
	require.NoError(t, err)
	priv, err := artifacts.ParsePrivateKey(string(key))
	require.NoError(t, err)
	pubText, err := os.ReadFile(prefix + ".pub")
	require.NoError(t, err)
	pub, err := artifacts.ParsePublicKey(string(pubText))
	require.NoError(t, err)
	require.Equal(t, priv.Public(), pub)
	require.Contains(t, r.stdout, strings.TrimSpace(string(pubText)))

	r = runCLI(t, "", "workflow", "keygen", "--out", prefix)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, prefix+".key already exists")
	again, err := os.ReadFile(prefix + ".key")
	require.NoError(t, err)
	require.Equal(t, key, again, "the key is not replaced")

	r = runCLI(t, "", "workflow", "keygen", "--out", prefix, "--force", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var out map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	require.Equal(t, prefix+".pub", out["public_key_file"])
	require.NotEqual(t, strings.TrimSpace(string(pubText)), out["public_key"])
}

func TestWorkflowInspect(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	path, id := f.artifact("tiles", "one", "Resize@v1.2", "Crop@v0.1")

	r := f.wfOK("inspect", path)
	require.Contains(t, r.stdout, "Release:      "+id+"\n")
	require.Contains(t, r.stdout, "Workflow:     tiles\n")
	require.Contains(t, r.stdout, "Digest:       not compared")
	require.Contains(t, r.stdout, "Archive:      ok, safe to unpack\n")
	require.Contains(t, r.stdout, "Tasks:        Crop@v0.1, Resize@v1.2\n")
	require.Contains(t, r.stdout, "Entrypoints:  linux/amd64: bin/linux-amd64/tiles\n")
	require.Contains(t, r.stdout, "Signature:    none given\n")

	// A file named by its release id is checked against it; one byte
	// changed is refused and the digest named.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	named := filepath.Join(f.dir, id+".tar.zst")
	require.NoError(t, os.WriteFile(named, data, 0o644))
	r = f.wfOK("inspect", named)
	require.Contains(t, r.stdout, "Digest:       ok, matches the file name\n")
	data[len(data)/2] ^= 0x20
	require.NoError(t, os.WriteFile(named, data, 0o644))
	r = f.wf("inspect", named)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "artifact digest does not match the release id")
	require.Contains(t, r.stderr, "want release "+id)
	require.Contains(t, r.stderr, "SHA-256 is ")
	require.Empty(t, r.stdout)
	// Without an expected id the damage is still found in the archive.
	tampered := filepath.Join(f.dir, "tampered.tar.zst")
	require.NoError(t, os.WriteFile(tampered, data, 0o644))
	r = f.wf("inspect", tampered)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "unsafe or invalid archive")
	r = f.wf("inspect", path, "--id", strings.Repeat("0", 64))
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "want release "+strings.Repeat("0", 64)+", the file's SHA-256 is "+id)

	// Signatures: publish signed, then verify with the right and a wrong key.
	f.ok("workflow", "keygen", "--out", filepath.Join(f.dir, "good"))
	f.ok("workflow", "keygen", "--out", filepath.Join(f.dir, "other"))
	f.wfOK("publish", path, "--sign-key", filepath.Join(f.dir, "good.key"))
	sig := f.releases("tiles")[0]["signature"].(string)
	goodPub := filepath.Join(f.dir, "good.pub")
	otherPub, err := os.ReadFile(filepath.Join(f.dir, "other.pub"))
	require.NoError(t, err)

	r = f.wfOK("inspect", path, "--signature", sig, "--trusted-key", goodPub)
	require.Contains(t, r.stdout, "Signature:    valid, by one of 1 trusted key(s)\n")
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "tiles.sig"), []byte(sig+"\n"), 0o644))
	r = f.wfOK("inspect", path, "--sig-file", filepath.Join(f.dir, "tiles.sig"),
		"--trusted-key", strings.TrimSpace(string(otherPub)), "--trusted-key", goodPub, "--json")
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, "valid", out["signature"])
	require.Equal(t, id, out["id"])
	require.Equal(t, "tiles", out["manifest"].(map[string]any)["workflow"])

	r = f.wf("inspect", path, "--signature", sig, "--trusted-key", strings.TrimSpace(string(otherPub)))
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "release signature is not valid: release "+id+": no trusted key (of 1) verifies it")
	r = f.wf("inspect", path, "--trusted-key", goodPub)
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stderr, "release is not signed")
	r = f.wfOK("inspect", path, "--signature", sig)
	require.Contains(t, r.stdout, "Signature:    present, not verified (give --trusted-key)\n")
}

func TestWorkflowListAndReleases(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	r := f.wfOK("list")
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no workflow releases in "+f.store+" yet")
	r = f.wfOK("releases", "tiles")
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "workflow tiles has no releases")
	require.Equal(t, "[]\n", f.wfOK("releases", "tiles", "--json").stdout)

	p1, id1 := f.artifact("tiles", "one", "Resize@v1.2")
	p2, id2 := f.artifact("tiles", "two", "Resize@v1.3")
	p3, id3 := f.artifact("thumbs", "one", "Thumb@v1.0")
	for _, p := range []string{p1, p2, p3} {
		f.wfOK("publish", p)
	}
	rels := f.releases("tiles")
	require.Len(t, rels, 2)
	require.Equal(t, id2, rels[0]["id"], "newest first")
	require.Equal(t, id1, rels[1]["id"])

	f.cluster("dev")
	f.cluster("prod")
	f.wfOK("deploy", "--cluster", "dev", "--workflow", "tiles", "--latest")
	f.wfOK("deploy", "--cluster", "prod", "--workflow", "tiles", "--release", id1[:8])

	r = f.wfOK("list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, `^WORKFLOW\s+LATEST\s+PUBLISHED\s+RELEASES\s+DEPLOYED$`, lines[0])
	require.Regexp(t, `^thumbs\s+`+id3[:12]+`\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+1\s+-$`, lines[1])
	require.Regexp(t, `^tiles\s+`+id2[:12]+`\s+\S+ \S+\s+2\s+dev, prod \(`+id1[:12]+`\)$`, lines[2])

	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.wfOK("list", "--json").stdout), &list))
	require.Len(t, list, 2)
	require.Equal(t, "tiles", list[1]["workflow"])
	require.Equal(t, id2, list[1]["latest"])
	require.Equal(t, []any{map[string]any{"cluster": "dev", "release": id2}, map[string]any{"cluster": "prod", "release": id1}},
		list[1]["deployments"])

	// Without Redis the store is still listed.
	r = runCLI(t, "", "--redis", "redis://127.0.0.1:1/0", "workflow", "list", "--store", f.store)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "deployments not shown")
	require.Regexp(t, `tiles\s+`+id2[:12]+`\s+\S+ \S+\s+2\s+\?`, r.stdout)
}

func TestWorkflowUsageErrors(t *testing.T) {
	t.Parallel()
	const dead = "redis://127.0.0.1:1/0"
	store := "file://" + filepath.ToSlash(t.TempDir())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"workflow", "bogus"}, `unknown command "bogus" for "runfleet workflow"`},
		{[]string{"workflow", "publish", "a", "b"}, `unexpected argument "b"`},
		{[]string{"workflow", "publish", "a", "--workflow", "Bad"}, `--workflow: invalid workflow slug "Bad"`},
		{[]string{"workflow", "keygen"}, "missing required flag --out"},
		{[]string{"workflow", "deploy", "--cluster", "dev", "--workflow", "wf"}, "missing --release ID or --latest"},
		{[]string{"workflow", "deploy", "--cluster", "dev", "--workflow", "wf", "--latest", "--release", "ab"}, "--release and --latest are mutually exclusive"},
		{[]string{"workflow", "deploy", "--workflow", "wf", "--latest"}, "missing --cluster (or --target"},
		{[]string{"workflow", "deploy", "--workflow", "wf", "--latest", "--cluster", "a", "--target", "b"}, "--cluster and --target are mutually exclusive"},
		{[]string{"workflow", "undeploy", "--workflow", "wf"}, "missing --cluster"},
		{[]string{"workflow", "releases"}, "missing SLUG"},
		{[]string{"workflow", "inspect"}, "missing ARTIFACT"},
		{[]string{"workflow", "inspect", "x", "--signature", "a", "--sig-file", "b"}, "--signature and --sig-file are mutually exclusive"},
		{[]string{"workflow", "inspect", "x", "--id", "abc"}, "--id: invalid release id"},
		{[]string{"cluster", "deployments"}, "missing SLUG"},
	} {
		args := tc.args
		if args[0] == "workflow" && slices.Contains([]string{"publish", "deploy", "list", "releases"}, args[1]) {
			args = append(args, "--store", store)
		}
		r := runCLI(t, "", append([]string{"--redis", dead}, args...)...)
		require.Equal(t, ExitUsage, r.code, "runfleet %v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, "runfleet: "+tc.want, "runfleet %v", tc.args)
		require.Empty(t, r.stdout, "runfleet %v", tc.args)
	}
}

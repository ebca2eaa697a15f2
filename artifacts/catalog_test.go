package artifacts

import (
	"archive/tar"
	"context"
	"crypto/ed25519"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type catalogBundle struct {
	ctx   context.Context
	store *FileStore
	cat   *Catalog
	dir   string // for artifact files
	now   time.Time
}

func setupCatalog(t *testing.T) *catalogBundle {
	t.Helper()
	s, err := NewFileStore(filepath.Join(t.TempDir(), "store"))
	require.NoError(t, err)
	b := &catalogBundle{ctx: t.Context(), store: s, dir: t.TempDir(),
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b.cat = &Catalog{Store: s, now: func() time.Time {
		b.now = b.now.Add(time.Second)
		return b.now
	}}
	return b
}

// artifact packs a release of workflow wf whose content depends on variant
// and writes it to a file, returning its path and id.
func (b *catalogBundle) artifact(t *testing.T, wf, variant string) (string, string) {
	t.Helper()
	m := testManifest()
	m.Workflow = wf
	files := testFiles()
	files["README.txt"] = File{Data: []byte(variant)}
	data, id := packBytes(t, m, files)
	path := filepath.Join(b.dir, wf+"-"+variant+".tar.zst")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path, id
}

func TestCatalogPublish(t *testing.T) {
	t.Parallel()
	b := setupCatalog(t)
	path, id := b.artifact(t, "tiles", "one")

	rel, isNew, err := b.cat.Publish(b.ctx, path, nil)
	require.NoError(t, err)
	require.True(t, isNew)
	require.Equal(t, id, rel.ID)
	require.Equal(t, "tiles", rel.Workflow)
	require.Equal(t, "tiles", rel.Manifest.Workflow)
	require.False(t, rel.Signed())
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, st.Size(), rel.Size)

	keys, err := b.store.List(b.ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"releases/tiles/" + id + ".json", "releases/tiles/" + id + ".tar.zst", "releases/tiles/latest"}, keys)

	// The stored artifact is byte for byte the file.
	rc, err := b.cat.OpenArtifact(b.ctx, "tiles", id)
	require.NoError(t, err)
	stored, err := io.ReadAll(rc)
	require.NoError(t, rc.Close())
	require.NoError(t, err)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, orig, stored)

	// The record is readable JSON with an RFC 3339 time.
	rc, err = b.store.Get(b.ctx, "releases/tiles/"+id+".json")
	require.NoError(t, err)
	rec, err := io.ReadAll(rc)
	require.NoError(t, rc.Close())
	require.NoError(t, err)
	require.Contains(t, string(rec), `"published_at": "2026-03-01T12:00:01Z"`)
	require.NotContains(t, string(rec), "signature")

	// Publishing again is idempotent; with a key it adds the signature.
	again, isNew, err := b.cat.Publish(b.ctx, path, nil)
	require.NoError(t, err)
	require.False(t, isNew)
	require.Equal(t, rel, again)

	pub, priv, err := GenerateKey()
	require.NoError(t, err)
	signed, isNew, err := b.cat.Publish(b.ctx, path, priv)
	require.NoError(t, err)
	require.False(t, isNew)
	require.True(t, signed.Signed())
	require.Equal(t, rel.PublishedAt, signed.PublishedAt, "the first publication time is kept")
	require.NoError(t, Verify([]ed25519.PublicKey{pub}, id, signed.Signature))
	got, err := b.cat.Release(b.ctx, "tiles", id)
	require.NoError(t, err)
	require.Equal(t, signed, got)

	rels, err := b.cat.Releases(b.ctx, "tiles")
	require.NoError(t, err)
	require.Len(t, rels, 1, "one release however often it is published")
	keys, err = b.store.List(b.ctx, "")
	require.NoError(t, err)
	require.Len(t, keys, 3)

	// The same key again changes nothing; another key is refused.
	_, _, err = b.cat.Publish(b.ctx, path, priv)
	require.NoError(t, err)
	_, other, err := GenerateKey()
	require.NoError(t, err)
	_, _, err = b.cat.Publish(b.ctx, path, other)
	require.ErrorIs(t, err, ErrSignedByAnotherKey)
	got, err = b.cat.Release(b.ctx, "tiles", id)
	require.NoError(t, err)
	require.Equal(t, signed.Signature, got.Signature, "the first signature is kept")
}

// Publishing again repairs a stored artifact that was damaged.
func TestCatalogPublishRepairsDamagedArtifact(t *testing.T) {
	t.Parallel()
	b := setupCatalog(t)
	path, id := b.artifact(t, "tiles", "one")
	_, _, err := b.cat.Publish(b.ctx, path, nil)
	require.NoError(t, err)
	stored := filepath.Join(b.store.Root, "releases", "tiles", id+".tar.zst")
	require.NoError(t, os.WriteFile(stored, []byte("bit rot"), 0o644))
	_, isNew, err := b.cat.Publish(b.ctx, path, nil)
	require.NoError(t, err)
	require.False(t, isNew)
	rc, err := b.cat.OpenArtifact(b.ctx, "tiles", id)
	require.NoError(t, err)
	defer rc.Close()
	got, err := Digest(rc)
	require.NoError(t, err)
	require.Equal(t, id, got)
}

func TestCatalogListsAndResolves(t *testing.T) {
	t.Parallel()
	b := setupCatalog(t)
	_, err := b.cat.Latest(b.ctx, "tiles")
	require.ErrorIs(t, err, ErrReleaseNotFound)
	require.Contains(t, err.Error(), `workflow "tiles" has no published release`)
	wfs, err := b.cat.Workflows(b.ctx)
	require.NoError(t, err)
	require.Empty(t, wfs)

	p1, id1 := b.artifact(t, "tiles", "one")
	p2, id2 := b.artifact(t, "tiles", "two")
	p3, id3 := b.artifact(t, "a-b", "x")
	for _, p := range []string{p1, p2, p3} {
		_, _, err := b.cat.Publish(b.ctx, p, nil)
		require.NoError(t, err)
	}

	wfs, err = b.cat.Workflows(b.ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a-b", "tiles"}, wfs)

	rels, err := b.cat.Releases(b.ctx, "tiles")
	require.NoError(t, err)
	require.Len(t, rels, 2)
	require.Equal(t, []string{id2, id1}, []string{rels[0].ID, rels[1].ID}, "newest first")
	latest, err := b.cat.Latest(b.ctx, "tiles")
	require.NoError(t, err)
	require.Equal(t, id2, latest.ID)

	// Re-publishing an older release makes it the latest again.
	_, _, err = b.cat.Publish(b.ctx, p1, nil)
	require.NoError(t, err)
	latest, err = b.cat.Latest(b.ctx, "tiles")
	require.NoError(t, err)
	require.Equal(t, id1, latest.ID)

	got, err := b.cat.Release(b.ctx, "tiles", id1[:8])
	require.NoError(t, err)
	require.Equal(t, id1, got.ID)
	got, err = b.cat.Release(b.ctx, "tiles", strings.ToUpper(id2[:12]))
	require.NoError(t, err)
	require.Equal(t, id2, got.ID)

	_, err = b.cat.Release(b.ctx, "tiles", id3)
	require.ErrorIs(t, err, ErrReleaseNotFound)
	require.Contains(t, err.Error(), `workflow "tiles" has no release `+id3)
	_, err = b.cat.Release(b.ctx, "tiles", id3[:10])
	require.ErrorIs(t, err, ErrReleaseNotFound)
	require.Contains(t, err.Error(), `workflow "tiles"`)
	_, err = b.cat.Release(b.ctx, "tiles", id1[:7])
	require.ErrorIs(t, err, ErrInvalidID)
	_, err = b.cat.Release(b.ctx, "Tiles", id1)
	require.ErrorContains(t, err, `invalid workflow slug "Tiles"`)
	_, err = b.cat.OpenArtifact(b.ctx, "tiles", id3)
	require.ErrorIs(t, err, ErrReleaseNotFound)
}

func TestCatalogAmbiguousPrefix(t *testing.T) {
	t.Parallel()
	b := setupCatalog(t)
	// Two records sharing an 8-digit prefix (written by hand: finding real
	// artifacts that collide would take a while).
	path, id := b.artifact(t, "wf", "one")
	_, _, err := b.cat.Publish(b.ctx, path, nil)
	require.NoError(t, err)
	rc, err := b.store.Get(b.ctx, "releases/wf/"+id+".json")
	require.NoError(t, err)
	rec, err := io.ReadAll(rc)
	require.NoError(t, rc.Close())
	require.NoError(t, err)
	twin := id[:8] + strings.Repeat("0", IDLength-8)
	require.NoError(t, b.store.Put(b.ctx, "releases/wf/"+twin+".json",
		strings.NewReader(strings.ReplaceAll(string(rec), id, twin))))

	_, err = b.cat.Release(b.ctx, "wf", id[:8])
	require.ErrorIs(t, err, ErrAmbiguousRelease)
	require.Contains(t, err.Error(), `matches 2 releases of workflow "wf"`)
	got, err := b.cat.Release(b.ctx, "wf", id[:9])
	if id[8] == '0' {
		require.ErrorIs(t, err, ErrAmbiguousRelease)
	} else {
		require.NoError(t, err)
		require.Equal(t, id, got.ID)
	}
}

func TestCatalogPublishRefusesBadArtifacts(t *testing.T) {
	t.Parallel()
	b := setupCatalog(t)

	hostile := filepath.Join(b.dir, "hostile.tar.zst")
	require.NoError(t, os.WriteFile(hostile, buildArchive(t,
		reg(ManifestName, manifestJSON(t), 0o644),
		entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/passwd"}}), 0o644))
	_, _, err := b.cat.Publish(b.ctx, hostile, nil)
	require.ErrorIs(t, err, ErrUnsafeArchive)
	require.Contains(t, err.Error(), "symlink")

	garbage := filepath.Join(b.dir, "garbage.tar.zst")
	require.NoError(t, os.WriteFile(garbage, []byte("not an artifact"), 0o644))
	_, _, err = b.cat.Publish(b.ctx, garbage, nil)
	require.ErrorIs(t, err, ErrUnsafeArchive)

	_, _, err = b.cat.Publish(b.ctx, filepath.Join(b.dir, "missing.tar.zst"), nil)
	require.ErrorIs(t, err, os.ErrNotExist)

	keys, err := b.store.List(b.ctx, "")
	require.NoError(t, err)
	require.Empty(t, keys, "nothing is published")
}

func TestInspectArtifact(t *testing.T) {
	t.Parallel()
	b := setupCatalog(t)
	path, id := b.artifact(t, "tiles", "one")
	ins, err := InspectArtifact(b.ctx, path, "", Limits{})
	require.NoError(t, err)
	require.Equal(t, id, ins.ID)
	require.Equal(t, "tiles", ins.Manifest.Workflow)
	ins, err = InspectArtifact(b.ctx, path, id, Limits{})
	require.NoError(t, err)
	require.Equal(t, id, ins.ID)

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[len(data)/2] ^= 0x01
	require.NoError(t, os.WriteFile(path, data, 0o644))
	_, err = InspectArtifact(b.ctx, path, id, Limits{})
	require.ErrorIs(t, err, ErrDigestMismatch)
	require.Contains(t, err.Error(), "want release "+id)
	require.Contains(t, err.Error(), "SHA-256 is "+sha(data))
}

func TestDefaultStoreURL(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/srv/data dir")
	u, err := DefaultStoreURL()
	require.NoError(t, err)
	require.Equal(t, "file:///srv/data%20dir/runfleet/store", u)
	s, err := OpenStore(strings.Replace(u, "/srv/data%20dir", "/"+filepath.ToSlash(t.TempDir())[1:], 1))
	require.NoError(t, err)
	require.NotNil(t, s)

	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/ana")
	u, err = DefaultStoreURL()
	require.NoError(t, err)
	require.Equal(t, "file:///home/ana/.local/share/runfleet/store", u)
}

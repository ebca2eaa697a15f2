package artifacts

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/runfleet/runfleet/rftype"
)

// Catalog is the release catalog kept in a Store. Its layout, under the
// store's root:
//
//	releases/<workflow>/<id>.tar.zst   the artifact, named by its release id
//	releases/<workflow>/<id>.json      the release record (see Release)
//	releases/<workflow>/latest         text: the id of the release published last
//
// Publish writes the artifact before the record and the record before
// latest, so a record never names a missing artifact and latest never a
// missing record. Everything a release runner needs is under releases/, and
// it only reads: a runner's credentials need read access to releases/ and
// nothing else.
type Catalog struct {
	// Store holds the catalog. Required.
	Store Store
	// Limits bound the artifacts Publish and Inspect accept. Default:
	// DefaultLimits.
	Limits Limits
	// now is the clock for PublishedAt; default time.Now.
	now func() time.Time
}

// Release is a published release: the record stored as
// releases/<workflow>/<id>.json.
type Release struct {
	// ID is the release id, the lowercase hex SHA-256 of the artifact.
	ID string `json:"id"`
	// Workflow is the workflow slug, the manifest's.
	Workflow string `json:"workflow"`
	// Manifest is the artifact's manifest.
	Manifest Manifest `json:"manifest"`
	// Size is the artifact's size in bytes.
	Size int64 `json:"size"`
	// PublishedAt is when the release was first published (RFC 3339 in JSON).
	PublishedAt time.Time `json:"published_at"`
	// Signature is the detached ed25519 signature of the release id (see
	// Sign), base64 in JSON; empty when unsigned.
	Signature []byte `json:"signature,omitempty"`
}

// Signed reports whether the release carries a signature.
func (r Release) Signed() bool { return len(r.Signature) > 0 }

// Sentinel errors of the catalog; test with errors.Is.
var (
	// ErrReleaseNotFound is wrapped when no release matches a workflow and id.
	ErrReleaseNotFound = errors.New("release not found")
	// ErrAmbiguousRelease is wrapped when an id prefix matches several releases.
	ErrAmbiguousRelease = errors.New("ambiguous release id prefix")
	// ErrSignedByAnotherKey: a published release keeps its first signature.
	ErrSignedByAnotherKey = errors.New("the release is already signed with another key; a published release keeps its signature (publish a new build to sign with a new key)")
)

// MinIDPrefix is the shortest release id prefix Catalog.Release accepts.
const MinIDPrefix = 8

// maxRecordBytes bounds a release record: a manifest and a little more.
const maxRecordBytes = MaxManifestBytes + 64<<10

const releasesDir = "releases/"

func releasePrefix(workflow string) string { return releasesDir + workflow + "/" }
func artifactKey(workflow, id string) string {
	return releasePrefix(workflow) + id + ".tar.zst"
}
func recordKey(workflow, id string) string { return releasePrefix(workflow) + id + ".json" }
func latestKey(workflow string) string     { return releasePrefix(workflow) + "latest" }

func checkWorkflow(workflow string) error {
	return rftype.ValidateSlug("workflow", workflow)
}

func (c *Catalog) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// Inspection is what InspectArtifact found in an artifact file.
type Inspection struct {
	// ID is the release id: the SHA-256 of the file.
	ID string `json:"id"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Manifest is the verified manifest.
	Manifest Manifest `json:"manifest"`
}

// InspectArtifact verifies the artifact file at path without running
// anything: it hashes it, and when wantID is not empty refuses a digest
// other than wantID (ErrDigestMismatch); then it unpacks it into a temporary
// directory, removed before returning, which checks the archive's safety,
// its limits and its manifest exactly as a release runner would (see
// Unpack).
func InspectArtifact(ctx context.Context, path, wantID string, lim Limits) (Inspection, error) {
	f, err := os.Open(path)
	if err != nil {
		return Inspection{}, fmt.Errorf("inspect artifact: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Inspection{}, fmt.Errorf("inspect artifact: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Inspection{}, fmt.Errorf("inspect artifact: %s is not a regular file", path)
	}
	id, err := Digest(ctxReader{ctx, f})
	if err != nil {
		return Inspection{}, fmt.Errorf("inspect artifact %s: %w", path, err)
	}
	if wantID != "" && id != wantID {
		if err := ValidateID(wantID); err != nil {
			return Inspection{}, fmt.Errorf("inspect artifact %s: %w", path, err)
		}
		return Inspection{}, fmt.Errorf("inspect artifact %s: %w: want release %s, the file's SHA-256 is %s (%d bytes); it was tampered with, truncated or is another release",
			path, ErrDigestMismatch, wantID, id, st.Size())
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Inspection{}, fmt.Errorf("inspect artifact %s: %w", path, err)
	}
	tmp, err := os.MkdirTemp("", "runfleet-inspect-*")
	if err != nil {
		return Inspection{}, fmt.Errorf("inspect artifact %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	m, err := Unpack(ctx, f, id, filepath.Join(tmp, "release"), lim)
	if err != nil {
		return Inspection{}, fmt.Errorf("inspect artifact %s: %w", path, err)
	}
	return Inspection{ID: id, Size: st.Size(), Manifest: m}, nil
}

// Publish verifies the artifact at artifactPath (InspectArtifact) and
// publishes it as a release of its manifest's workflow, signed with key
// unless key is nil. It returns the release and whether this call published
// it. Publishing an artifact that is already in the catalog uploads it
// again only if the stored copy is damaged; it adds a signature to an
// unsigned release when key is given (a signed release keeps its signature:
// another key is refused with ErrSignedByAnotherKey), keeps the first
// PublishedAt, and still makes the release the workflow's latest.
func (c *Catalog) Publish(ctx context.Context, artifactPath string, key ed25519.PrivateKey) (Release, bool, error) {
	ins, err := InspectArtifact(ctx, artifactPath, "", c.Limits)
	if err != nil {
		return Release{}, false, fmt.Errorf("publish: %w", err)
	}
	wf, id := ins.Manifest.Workflow, ins.ID
	var sig []byte
	if key != nil {
		if sig, err = Sign(key, id); err != nil {
			return Release{}, false, fmt.Errorf("publish release %s: %w", id, err)
		}
	}

	rel, err := c.readRecord(ctx, wf, id)
	isNew := errors.Is(err, ErrReleaseNotFound)
	if err != nil && !isNew {
		return Release{}, false, fmt.Errorf("publish: %w", err)
	}
	if isNew {
		rel = Release{ID: id, Workflow: wf, Manifest: ins.Manifest, Size: ins.Size,
			PublishedAt: c.clock().UTC().Truncate(time.Millisecond)}
	}
	if sig != nil && rel.Signed() && !bytes.Equal(sig, rel.Signature) {
		// Replacing it would make runners that trust the first key refuse
		// a release that may be deployed already.
		return Release{}, false, fmt.Errorf("publish release %s: %w", id, ErrSignedByAnotherKey)
	}
	writeRecord := isNew || (sig != nil && !rel.Signed())
	if sig != nil {
		rel.Signature = sig
	}

	// The artifact is content-addressed and Store.Put is atomic, so one
	// already there should be this very artifact; check it all the same, so
	// that publishing again repairs a damaged copy.
	ok, err := c.storedIntact(ctx, wf, id)
	if err != nil {
		return Release{}, false, fmt.Errorf("publish release %s: %w", id, err)
	}
	if !ok {
		f, err := os.Open(artifactPath)
		if err != nil {
			return Release{}, false, fmt.Errorf("publish release %s: %w", id, err)
		}
		// Upload what was verified: a file changed since is refused.
		err = c.Store.Put(ctx, artifactKey(wf, id), newDigestCheck(f, id))
		_ = f.Close()
		if err != nil {
			return Release{}, false, fmt.Errorf("publish release %s: upload artifact: %w", id, err)
		}
	}
	if writeRecord {
		b, err := json.MarshalIndent(rel, "", "  ")
		if err != nil {
			return Release{}, false, fmt.Errorf("publish release %s: %w", id, err)
		}
		if err := c.Store.Put(ctx, recordKey(wf, id), bytes.NewReader(append(b, '\n'))); err != nil {
			return Release{}, false, fmt.Errorf("publish release %s: write record: %w", id, err)
		}
	}
	if err := c.Store.Put(ctx, latestKey(wf), strings.NewReader(id+"\n")); err != nil {
		return Release{}, false, fmt.Errorf("publish release %s: update latest: %w", id, err)
	}
	return rel, isNew, nil
}

// storedIntact reports whether the store holds the artifact of release id
// with the right digest.
func (c *Catalog) storedIntact(ctx context.Context, wf, id string) (bool, error) {
	rc, err := c.Store.Get(ctx, artifactKey(wf, id))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer rc.Close()
	got, err := Digest(rc)
	if err != nil {
		return false, err
	}
	return got == id, nil
}

// digestCheck reads r and fails at EOF unless its SHA-256 is want, so an
// upload never completes with bytes other than those verified.
type digestCheck struct {
	r    io.Reader
	want string
	h    hash.Hash
}

func newDigestCheck(r io.Reader, want string) *digestCheck {
	return &digestCheck{r: r, want: want, h: sha256.New()}
}

func (d *digestCheck) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(d.h.Sum(nil)); got != d.want {
			return n, fmt.Errorf("%w: the file changed after it was verified: its SHA-256 is now %s", ErrDigestMismatch, got)
		}
	}
	return n, err
}

// Release returns the record of a release of workflow. id is a full release
// id or a unique prefix of at least MinIDPrefix hex digits. Errors wrap
// ErrReleaseNotFound or ErrAmbiguousRelease and name the workflow.
func (c *Catalog) Release(ctx context.Context, workflow, id string) (Release, error) {
	if err := checkWorkflow(workflow); err != nil {
		return Release{}, err
	}
	id = strings.ToLower(strings.TrimSpace(id))
	if len(id) == IDLength {
		if err := ValidateID(id); err != nil {
			return Release{}, err
		}
		return c.readRecord(ctx, workflow, id)
	}
	if len(id) < MinIDPrefix || len(id) > IDLength || strings.Trim(id, "0123456789abcdef") != "" {
		return Release{}, fmt.Errorf("%w %q: want a release id or a prefix of at least %d of its hex digits", ErrInvalidID, id, MinIDPrefix)
	}
	keys, err := c.Store.List(ctx, releasePrefix(workflow)+id)
	if err != nil {
		return Release{}, fmt.Errorf("find release %s of workflow %q: %w", id, workflow, err)
	}
	var found []string
	for _, k := range keys {
		if full, ok := strings.CutSuffix(strings.TrimPrefix(k, releasePrefix(workflow)), ".json"); ok && ValidateID(full) == nil {
			found = append(found, full)
		}
	}
	switch len(found) {
	case 0:
		return Release{}, fmt.Errorf("%w: workflow %q has no release %s…", ErrReleaseNotFound, workflow, id)
	case 1:
		return c.readRecord(ctx, workflow, found[0])
	}
	return Release{}, fmt.Errorf("%w: %s matches %d releases of workflow %q (%s); give more digits",
		ErrAmbiguousRelease, id, len(found), workflow, strings.Join(found, ", "))
}

// readRecord reads and checks the record of release id of workflow.
func (c *Catalog) readRecord(ctx context.Context, workflow, id string) (Release, error) {
	rc, err := c.Store.Get(ctx, recordKey(workflow, id))
	if errors.Is(err, ErrNotFound) {
		return Release{}, fmt.Errorf("%w: workflow %q has no release %s", ErrReleaseNotFound, workflow, id)
	}
	if err != nil {
		return Release{}, fmt.Errorf("read release %s of workflow %q: %w", id, workflow, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxRecordBytes+1))
	if err != nil {
		return Release{}, fmt.Errorf("read release %s of workflow %q: %w", id, workflow, err)
	}
	if len(b) > maxRecordBytes {
		return Release{}, fmt.Errorf("read release %s of workflow %q: the record is over %d bytes", id, workflow, maxRecordBytes)
	}
	var r Release
	if err := json.Unmarshal(b, &r); err != nil {
		return Release{}, fmt.Errorf("decode release record %s: %w", recordKey(workflow, id), err)
	}
	switch {
	case r.ID != id || r.Workflow != workflow:
		return Release{}, fmt.Errorf("release record %s names release %s of workflow %q", recordKey(workflow, id), r.ID, r.Workflow)
	case r.Manifest.Workflow != workflow:
		return Release{}, fmt.Errorf("release record %s: its manifest is of workflow %q", recordKey(workflow, id), r.Manifest.Workflow)
	}
	if err := r.Manifest.Validate(); err != nil {
		return Release{}, fmt.Errorf("release record %s: %w", recordKey(workflow, id), err)
	}
	return r, nil
}

// Releases returns every release of workflow, newest first (by PublishedAt,
// then id). A workflow with no release gives an empty list.
func (c *Catalog) Releases(ctx context.Context, workflow string) ([]Release, error) {
	if err := checkWorkflow(workflow); err != nil {
		return nil, err
	}
	keys, err := c.Store.List(ctx, releasePrefix(workflow))
	if err != nil {
		return nil, fmt.Errorf("list releases of workflow %q: %w", workflow, err)
	}
	var out []Release
	for _, k := range keys {
		id, ok := strings.CutSuffix(strings.TrimPrefix(k, releasePrefix(workflow)), ".json")
		if !ok || ValidateID(id) != nil {
			continue
		}
		r, err := c.readRecord(ctx, workflow, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Release) int {
		return cmp.Or(b.PublishedAt.Compare(a.PublishedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Latest returns the release of workflow published last. A workflow that
// has none is ErrReleaseNotFound.
func (c *Catalog) Latest(ctx context.Context, workflow string) (Release, error) {
	if err := checkWorkflow(workflow); err != nil {
		return Release{}, err
	}
	rc, err := c.Store.Get(ctx, latestKey(workflow))
	if errors.Is(err, ErrNotFound) {
		return Release{}, fmt.Errorf("%w: workflow %q has no published release", ErrReleaseNotFound, workflow)
	}
	if err != nil {
		return Release{}, fmt.Errorf("read latest release of workflow %q: %w", workflow, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 2*IDLength))
	if err != nil {
		return Release{}, fmt.Errorf("read latest release of workflow %q: %w", workflow, err)
	}
	id := strings.TrimSpace(string(b))
	if err := ValidateID(id); err != nil {
		return Release{}, fmt.Errorf("read latest release of workflow %q: %s: %w", workflow, latestKey(workflow), err)
	}
	return c.readRecord(ctx, workflow, id)
}

// Workflows returns the slugs of the workflows with releases, sorted.
func (c *Catalog) Workflows(ctx context.Context) ([]string, error) {
	keys, err := c.Store.List(ctx, releasesDir)
	if err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	var out []string
	for _, k := range keys {
		wf, rest, ok := strings.Cut(strings.TrimPrefix(k, releasesDir), "/")
		if !ok || !rftype.ValidSlug(wf) {
			continue
		}
		if id, isRecord := strings.CutSuffix(rest, ".json"); !isRecord || ValidateID(id) != nil {
			continue
		}
		out = append(out, wf)
	}
	return slices.Compact(out), nil // keys are sorted: a workflow's are adjacent
}

// OpenArtifact opens the artifact of release id (a full id) of workflow.
// The caller verifies what it reads (Unpack checks the digest).
func (c *Catalog) OpenArtifact(ctx context.Context, workflow, id string) (io.ReadCloser, error) {
	if err := checkWorkflow(workflow); err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, fmt.Errorf("open artifact: %w", err)
	}
	rc, err := c.Store.Get(ctx, artifactKey(workflow, id))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: workflow %q has no artifact for release %s: %w", ErrReleaseNotFound, workflow, id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open artifact of release %s: %w", id, err)
	}
	return rc, nil
}

// DefaultStoreURL is the store used when none is configured: a file store
// in the user's data directory, $XDG_DATA_HOME/runfleet/store (default
// ~/.local/share/runfleet/store).
func DefaultStoreURL() (string, error) {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("default store: %w (set a store URL instead)", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(base, "runfleet", "store"))}
	return u.String(), nil
}

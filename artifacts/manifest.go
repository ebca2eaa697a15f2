package artifacts

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/runfleet/runfleet/rftype"
)

// FormatVersion is the artifact format version this package writes and reads.
const FormatVersion = 1

// ManifestName is the path of the manifest inside an artifact; it is always
// the first entry.
const ManifestName = "manifest.json"

// MaxManifestBytes is the largest manifest.json accepted.
const MaxManifestBytes = 1 << 20

// Supported platforms, the keys of Manifest.Entrypoints.
const (
	PlatformLinuxAMD64 = "linux/amd64"
	PlatformLinuxARM64 = "linux/arm64"
)

// Platforms lists the supported platforms in canonical order.
var Platforms = []string{PlatformLinuxAMD64, PlatformLinuxARM64}

// maxBuildField bounds each build metadata string.
const maxBuildField = 1024

// ErrInvalidManifest is wrapped by every manifest validation and decoding error.
var ErrInvalidManifest = errors.New("invalid manifest")

// Manifest describes a release: which workflow it belongs to, which task
// identifiers its binary serves and which file to run on each platform.
type Manifest struct {
	// FormatVersion is the artifact format version; must be FormatVersion (1).
	FormatVersion int `json:"format_version"`
	// Workflow is the workflow slug, ^[a-z0-9][a-z0-9-]{0,99}$.
	Workflow string `json:"workflow"`
	// Tasks are the task identifiers the release's binary registers; at least
	// one, none twice.
	Tasks []TaskID `json:"tasks"`
	// Entrypoints maps a platform (PlatformLinuxAMD64, PlatformLinuxARM64) to
	// the archive path of the executable to start on it; at least one.
	Entrypoints map[string]string `json:"entrypoints"`
	// Build is optional metadata about how the release was built.
	Build BuildInfo `json:"build,omitzero"`
}

// TaskID is a task identifier as recorded in a manifest: rftype.TaskIdentifier,
// a name of 1 to 256 bytes and a vMAJOR.MINOR version, encoded as
// {"name": ..., "version": ...}.
type TaskID = rftype.TaskIdentifier

// BuildInfo is build metadata that must not break determinism: nothing that
// changes between two builds of the same source (no timestamps, no hosts).
type BuildInfo struct {
	// GoVersion is the toolchain that built the binaries, e.g. "go1.26.4".
	GoVersion string `json:"go_version,omitempty"`
	// SourceRevision identifies the source, e.g. a git commit hash.
	SourceRevision string `json:"source_revision,omitempty"`
	// SDKVersion is the runfleet SDK version the binaries were built with.
	SDKVersion string `json:"sdk_version,omitempty"`
}

// Validate reports the first thing wrong with m, wrapped in ErrInvalidManifest.
func (m Manifest) Validate() error {
	if m.FormatVersion != FormatVersion {
		return manifestErr("format_version is %d, want %d", m.FormatVersion, FormatVersion)
	}
	if err := rftype.ValidateSlug("workflow", m.Workflow); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	if len(m.Tasks) == 0 {
		return manifestErr("tasks is empty: a release must serve at least one task identifier")
	}
	seen := make(map[rftype.Identifier]bool, len(m.Tasks))
	for i, t := range m.Tasks {
		id, err := t.Parse()
		if err != nil {
			return manifestErr("tasks[%d]: %v", i, err)
		}
		if seen[id] {
			return manifestErr("tasks[%d]: duplicate task identifier %s", i, t)
		}
		seen[id] = true
	}
	if len(m.Entrypoints) == 0 {
		return manifestErr("entrypoints is empty: name an executable for at least one of %s", strings.Join(Platforms, ", "))
	}
	for _, p := range sortedKeys(m.Entrypoints) {
		if !slices.Contains(Platforms, p) {
			return manifestErr("entrypoints: unsupported platform %q (supported: %s)", p, strings.Join(Platforms, ", "))
		}
		path := m.Entrypoints[p]
		if err := checkEntryPath(path); err != nil {
			return manifestErr("entrypoints[%q]: path %q %v", p, path, err)
		}
		if path == ManifestName {
			return manifestErr("entrypoints[%q]: the entrypoint cannot be %s", p, ManifestName)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"go_version", m.Build.GoVersion},
		{"source_revision", m.Build.SourceRevision},
		{"sdk_version", m.Build.SDKVersion},
	} {
		if len(f.v) > maxBuildField {
			return manifestErr("build.%s is %d bytes, at most %d allowed", f.name, len(f.v), maxBuildField)
		}
		if !utf8.ValidString(f.v) {
			return manifestErr("build.%s is not valid UTF-8", f.name)
		}
	}
	return nil
}

// Encode validates m and returns its canonical JSON encoding, tasks sorted by
// name then version, as written to manifest.json.
func (m Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Tasks = slices.Clone(m.Tasks)
	slices.SortFunc(m.Tasks, func(a, b TaskID) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version))
	})
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest strictly decodes and validates a manifest.json: at most
// MaxManifestBytes, one JSON object, no unknown fields.
func DecodeManifest(b []byte) (Manifest, error) {
	if len(b) > MaxManifestBytes {
		return Manifest{}, manifestErr("%s is %d bytes, at most %d allowed", ManifestName, len(b), MaxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, manifestErr("decode %s: %v", ManifestName, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, manifestErr("decode %s: unexpected data after the JSON object", ManifestName)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Identifiers returns the manifest's task identifiers, parsed.
func (m Manifest) Identifiers() ([]rftype.Identifier, error) {
	ids := make([]rftype.Identifier, 0, len(m.Tasks))
	for _, t := range m.Tasks {
		id, err := t.Parse()
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func manifestErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidManifest, fmt.Sprintf(format, args...))
}

// maxEntryPath is the longest entry path accepted (the USTAR limit).
const maxEntryPath = 255

// checkEntryPath reports why p is not a canonical relative slash path, or nil.
// The error reads after the path, e.g. `path "a/../b" contains a ".." component`.
func checkEntryPath(p string) error { return checkSlashPath(p, maxEntryPath) }

// checkSlashPath is checkEntryPath with a length limit of maxLen bytes.
func checkSlashPath(p string, maxLen int) error {
	switch {
	case p == "":
		return errors.New("is empty")
	case len(p) > maxLen:
		return fmt.Errorf("is %d bytes, at most %d allowed", len(p), maxLen)
	case strings.HasPrefix(p, "/"):
		return errors.New("is absolute")
	case strings.ContainsAny(p, "\\\x00"):
		return errors.New("contains a backslash or NUL byte")
	case !utf8.ValidString(p):
		return errors.New("is not valid UTF-8")
	}
	for c := range strings.SplitSeq(p, "/") {
		switch c {
		case "..":
			return errors.New(`contains a ".." component`)
		case ".":
			return errors.New(`contains a "." component`)
		case "":
			return errors.New("contains an empty component")
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package queue

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// Identifier names a task implementation: a name and a vMAJOR.MINOR version.
type Identifier struct {
	Name  string
	Major int
	Minor int
}

// MaxNameLen is the longest task name accepted, in bytes.
const MaxNameLen = 256

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)$`)

// ErrInvalidIdentifier is wrapped by every identifier validation error.
var ErrInvalidIdentifier = errors.New("invalid task identifier")

// ParseIdentifier validates a task name and version string.
func ParseIdentifier(name, version string) (Identifier, error) {
	if len(name) == 0 || len(name) > MaxNameLen {
		return Identifier{}, fmt.Errorf("%w: name %q must be 1 to %d bytes", ErrInvalidIdentifier, name, MaxNameLen)
	}
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return Identifier{}, fmt.Errorf("%w: version %q of task %q must look like v1.2 (vMAJOR.MINOR)", ErrInvalidIdentifier, version, name)
	}
	major, err1 := strconv.Atoi(m[1])
	minor, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil || major > 1_000_000 || minor > 1_000_000 {
		return Identifier{}, fmt.Errorf("%w: version %q of task %q has a number out of range", ErrInvalidIdentifier, version, name)
	}
	return Identifier{Name: name, Major: major, Minor: minor}, nil
}

// Version is the canonical version string, e.g. "v1.3".
func (id Identifier) Version() string {
	return "v" + strconv.Itoa(id.Major) + "." + strconv.Itoa(id.Minor)
}

func (id Identifier) String() string { return id.Name + "@" + id.Version() }

// CanRun reports whether a runner advertising id may execute a task with
// identifier task: same name and major, and the runner's minor is at least
// the task's.
func (id Identifier) CanRun(task Identifier) bool {
	return id.Name == task.Name && id.Major == task.Major && id.Minor >= task.Minor
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,99}$`)

// ErrInvalidSlug is wrapped by cluster slug validation errors.
var ErrInvalidSlug = errors.New("invalid cluster slug")

// ValidateSlug checks a cluster slug against ^[a-z0-9][a-z0-9-]{0,99}$.
func ValidateSlug(slug string) error {
	if !slugRE.MatchString(slug) {
		return fmt.Errorf("%w %q: use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit", ErrInvalidSlug, slug)
	}
	return nil
}

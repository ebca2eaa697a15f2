package rftype

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// MaxNameLen is the longest task name accepted, in bytes.
const MaxNameLen = 256

// ErrInvalidIdentifier is wrapped by every task identifier validation error.
var ErrInvalidIdentifier = errors.New("invalid task identifier")

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)$`)

// TaskIdentifier is a task identifier as written: a task name (1 to 256
// bytes) and a vMAJOR.MINOR version, e.g. {"Resize", "v1.2"}. It is what
// tasks declare, what manifests record and what the worker protocol sends.
// It is not checked until [TaskIdentifier.Validate] or [TaskIdentifier.Parse].
type TaskIdentifier struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Validate reports a malformed name or version, wrapping ErrInvalidIdentifier.
func (id TaskIdentifier) Validate() error {
	_, err := ParseIdentifier(id.Name, id.Version)
	return err
}

// Parse validates id and returns it with its version parsed.
func (id TaskIdentifier) Parse() (Identifier, error) {
	return ParseIdentifier(id.Name, id.Version)
}

// String is name@version as written, e.g. "Resize@v1.2".
func (id TaskIdentifier) String() string { return id.Name + "@" + id.Version }

// Identifier is a validated task identifier, its version parsed into
// numbers: comparable, usable as a map key, and what the queue stores. Make
// one with [ParseIdentifier] or [TaskIdentifier.Parse].
type Identifier struct {
	Name  string
	Major int
	Minor int
}

// ParseIdentifier validates a task name and version string. Errors wrap
// ErrInvalidIdentifier and say what is wrong.
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

// String is name@version in canonical form, e.g. "Resize@v1.3".
func (id Identifier) String() string { return id.Name + "@" + id.Version() }

// TaskIdentifier is id as written in canonical form.
func (id Identifier) TaskIdentifier() TaskIdentifier {
	return TaskIdentifier{Name: id.Name, Version: id.Version()}
}

// CanRun reports whether a runner advertising id may execute a task with
// identifier task: same name and major, and the runner's minor is at least
// the task's.
func (id Identifier) CanRun(task Identifier) bool {
	return id.Name == task.Name && id.Major == task.Major && id.Minor >= task.Minor
}

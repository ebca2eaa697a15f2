package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/rftype"
)

// Task is a unit of work. Its exported fields are its input, encoded as JSON;
// Execute runs it on a runner.
type Task interface {
	Execute(ctx context.Context) error
}

// IdentifiableTask is a Task that names itself. Without Identifier a task is
// named after its struct type, version v0.0.
type IdentifiableTask interface {
	Task
	Identifier() TaskIdentifier
}

// TaskIdentifier is a task name (1 to 256 bytes) and a vMAJOR.MINOR version.
// A runner may execute a task when the names and majors are equal and the
// runner's minor is at least the task's: a v1.3 task runs on v1.3 or v1.5
// runners, never on v1.2 or v2.0.
//
// It is rftype.TaskIdentifier, the identifier every runfleet package shares:
// fields Name and Version, methods Validate, Parse and String.
type TaskIdentifier = rftype.TaskIdentifier

// NewTaskIdentifier is a convenience for TaskIdentifier{name, version}.
func NewTaskIdentifier(name, version string) TaskIdentifier {
	return TaskIdentifier{Name: name, Version: version}
}

// IdentifierOf returns the identifier of a task value.
func IdentifierOf(t Task) TaskIdentifier {
	if it, ok := t.(IdentifiableTask); ok {
		return it.Identifier()
	}
	rt := reflect.TypeOf(t)
	for rt != nil && rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	name := ""
	if rt != nil {
		name = rt.Name()
	}
	return TaskIdentifier{Name: name, Version: "v0.0"}
}

// encodeInput turns a task value into its JSON input and parsed identifier.
func encodeInput(t Task) (queue.Identifier, []byte, error) {
	if t == nil {
		return queue.Identifier{}, nil, fmt.Errorf("task is nil")
	}
	id, err := IdentifierOf(t).Parse()
	if err != nil {
		return queue.Identifier{}, nil, err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return id, nil, fmt.Errorf("encode input of task %s: %w", id, err)
	}
	return id, b, nil
}

package benchtask

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// Object is the created object a storage automation adds to its job's
// input under "object" (the control plane's ObjectRef, as JSON).
type Object struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Size      int64     `json:"size"`
	ETag      string    `json:"etag"`
	VersionID string    `json:"version_id"`
	EventTime time.Time `json:"event_time"`
}

// Ingest is the task of a storage automation: it records the object it was
// submitted for in its display text ("object <bucket>/<key>", then
// " tag=<Tag>" when the automation's prototype input sets one), then sleeps
// MS milliseconds (or until its context ends). Tag and MS are the prototype
// fields an automation may set.
type Ingest struct {
	Object Object `json:"object"`
	Tag    string `json:"tag,omitempty"`
	MS     int    `json:"ms,omitempty"`
}

func (*Ingest) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Ingest", Version)
}
func (in *Ingest) Execute(ctx context.Context) error {
	if in.Object.Bucket == "" || in.Object.Key == "" {
		return errors.New(`ingest: the input has no "object" with a bucket and key; submit it from a storage automation`)
	}
	display := fmt.Sprintf("object %s/%s", in.Object.Bucket, in.Object.Key)
	if in.Tag != "" {
		display += " tag=" + in.Tag
	}
	workflows.SetDisplay(ctx, display)
	return (&Sleep{MS: in.MS}).Execute(ctx)
}

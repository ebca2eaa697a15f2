package workflows

import (
	"testing"

	"github.com/runfleet/runfleet/queue"
)

// What a release worker built before stored inputs gets as the input of a
// task whose input is stored: strict decoding refuses it, so the worker
// fails the task rather than run it on a zero input.
func TestOldWorkerInputIsRefused(t *testing.T) {
	var task struct {
		Scene string `json:"scene"`
	}
	err := decodeInput(oldWorkerInput(queue.PayloadRef{SHA256: "ab", Bytes: 1}), &task)
	if err == nil || err.Error() != `json: unknown field "$runfleet_input_payload"` {
		t.Fatalf("decodeInput = %v", err)
	}
}

// References round-trip, and anything that starts like one but is not
// one is an error, never an inline input.
func TestPayloadRefParse(t *testing.T) {
	ref := refOf([]byte(`{"a":1}`))
	got, ok, err := queue.ParsePayloadRef([]byte(ref.String()))
	if err != nil || !ok || got != ref {
		t.Fatalf("ParsePayloadRef(%q) = %v, %v, %v", ref.String(), got, ok, err)
	}
	if _, ok, err := queue.ParsePayloadRef([]byte(`{"a":1}`)); ok || err != nil {
		t.Fatalf("an inline input parsed as a reference: %v %v", ok, err)
	}
	for _, bad := range []string{"@", "@sha256:", "@sha256:" + ref.SHA256, "@sha256:" + ref.SHA256 + ":-1",
		"@sha256:" + ref.SHA256[:63] + ":7", "@sha256:" + ref.SHA256[:63] + "G:7", "@md5:x:7"} {
		if _, _, err := queue.ParsePayloadRef([]byte(bad)); err == nil {
			t.Errorf("ParsePayloadRef(%q) took it", bad)
		}
	}
}

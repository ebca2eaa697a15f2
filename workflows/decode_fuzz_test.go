package workflows

import (
	"encoding/json"
	"reflect"
	"testing"
)

type fuzzInput struct {
	Name  string            `json:"name"`
	Count int               `json:"count"`
	Tags  []string          `json:"tags,omitempty"`
	Meta  map[string]string `json:"meta,omitempty"`
	Inner *struct {
		X float64 `json:"x"`
	} `json:"inner,omitempty"`
}

// FuzzDecodeInput feeds arbitrary task envelopes' inputs to the runner's
// strict decoder: it must never panic, must refuse unknown fields and
// trailing data, and whatever it accepts must survive a round trip.
func FuzzDecodeInput(f *testing.F) {
	for _, s := range []string{`{}`, `{"name":"a","count":3}`, `{"nmae":"typo"}`, `{"count":"3"}`, `{} {}`,
		`[1,2]`, `null`, `{"inner":{"x":1e308}}`, `{"tags":["a",null]}`, ``, `{"meta":{"k":"v"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		var v fuzzInput
		if err := decodeInput(input, &v); err != nil {
			return
		}
		b, err := json.Marshal(&v)
		if err != nil {
			t.Fatalf("accepted input %q does not encode: %v", input, err)
		}
		var again fuzzInput
		if err := decodeInput(b, &again); err != nil {
			t.Fatalf("re-encoded input %s does not decode: %v", b, err)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip changed %+v into %+v", v, again)
		}
	})
}

package jsonscan

import (
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"testing"
)

// The scanner agrees with encoding/json on what is one JSON object.
func TestCheckObjectAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`, ` {} `, "\n{\"a\":1}\n", `{"a":[1,2,{"b":null}],"c":true,"d":false}`,
		`{"n":-0.5e+10,"m":0,"k":10E-2,"z":-0,"y":1.25}`, `{"s":"a\"b\\c\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`,
		`{"a":{"b":{"c":[[[]]]}}}`, `{"":""}`, `{"a":[]}`, `{"a":{}}`, `{"u":"héllo"}`,
		// refused
		``, ` `, `[]`, `"x"`, `1`, `null`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`,
		`{"a":[1,]}`, `{"a":[,1]}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":+1}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":True}`, `{"a":"\x"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}",
		`{"a":"unterminated}`, `{} {}`, `{}x`, `{"a":1}]`, `{"a":[1}`, `{"a":{"b":1]}`, `{a:1}`, `{'a':1}`,
		`{"a":1e5.5}`, `{"a":-01}`, `{"a":0x10}`, `{"a":[1 2]}`,
	} {
		var obj map[string]any
		want := json.Unmarshal([]byte(in), &obj) == nil && obj != nil
		err := CheckObject(strings.NewReader(in))
		if (err == nil) != want {
			t.Errorf("CheckObject(%q) = %v; encoding/json accepts it: %v", in, err, want)
		}
	}
}

func TestCheckObjectErrorsSayWhere(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,}`:   `invalid character '}' looking for the beginning of an object key at byte 8`,
		`{"a":1} {}`: "data after the JSON object at byte 9",
		`{"a":`:      "unexpected end of JSON input after 5 bytes",
		`[1]`:        `not a JSON object: it starts with '['`,
	} {
		err := CheckObject(strings.NewReader(in))
		if err == nil || err.Error() != want {
			t.Errorf("CheckObject(%q) = %v, want %q", in, err, want)
		}
	}
}

// Deep nesting is refused, not a stack overflow.
func TestCheckObjectDepth(t *testing.T) {
	in := `{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`
	if err := CheckObject(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("got %v", err)
	}
}

// A 64 MiB string is checked in a few hundred KiB of memory.
func TestCheckObjectKeepsNothing(t *testing.T) {
	const n = 64 << 20
	r := io.MultiReader(strings.NewReader(`{"data":"`), io.LimitReader(repeatReader('x'), n), strings.NewReader(`"}`))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := CheckObject(r); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("allocated %d bytes to check a %d byte string", alloc, n)
	}
}

type repeatReader byte

func (r repeatReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(r)
	}
	return len(b), nil
}

func BenchmarkCheckObject(b *testing.B) {
	in := `{"data":"` + strings.Repeat("abcdefgh", 1<<20) + `","n":[1,2.5,-3e4,true,null]}`
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := CheckObject(strings.NewReader(in)); err != nil {
			b.Fatal(err)
		}
	}
}

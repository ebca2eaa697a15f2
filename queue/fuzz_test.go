package queue

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

func FuzzParseIdentifier(f *testing.F) {
	for _, s := range [][2]string{{"Noop", "v1.0"}, {"tiles.Tile", "v12.345"}, {"", "v1.0"}, {"x", "1.0"},
		{"x", "v1"}, {"x", "v01.2"}, {"x", "v99999999999999999999.0"}, {"x", "v1.0\n"}, {"日本", "v0.0"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, version string) {
		id, err := ParseIdentifier(name, version)
		if err != nil {
			return
		}
		if len(id.Name) == 0 || len(id.Name) > MaxNameLen || id.Major < 0 || id.Minor < 0 {
			t.Fatalf("accepted out-of-range identifier %+v from %q %q", id, name, version)
		}
		again, err := ParseIdentifier(id.Name, id.Version())
		if err != nil || again != id {
			t.Fatalf("canonical form %q of %q does not parse back: %v %+v", id.Version(), version, err, again)
		}
		if !id.CanRun(id) {
			t.Fatalf("%v cannot run itself", id)
		}
	})
}

// FuzzParseHints feeds arbitrary stream entries (as any writer could XADD
// them) to the hint decoder: it must never panic, and must mark an entry it
// cannot use as malformed (seq -1) rather than invent a task.
func FuzzParseHints(f *testing.F) {
	f.Add("job-1", "0")
	f.Add("", "12")
	f.Add("j", "-5")
	f.Add("j", "9223372036854775808")
	f.Add("j", "1e3")
	f.Fuzz(func(t *testing.T, job, seq string) {
		hints := parseHints([]redis.XStream{{Stream: "s", Messages: []redis.XMessage{
			{ID: "1-0", Values: map[string]any{"j": job, "t": seq}},
			{ID: "1-1", Values: nil},
		}}})
		if len(hints) != 2 || hints[1].Seq != -1 {
			t.Fatalf("an entry without fields must be malformed: %+v", hints)
		}
		h := hints[0]
		n, err := strconv.ParseInt(seq, 10, 64)
		valid := err == nil && job != ""
		if valid && (h.Seq != n || h.JobID != job) {
			t.Fatalf("valid entry %q/%q decoded as %+v", job, seq, h)
		}
		if !valid && h.Seq != -1 {
			t.Fatalf("invalid entry %q/%q decoded as %+v", job, seq, h)
		}
	})
}

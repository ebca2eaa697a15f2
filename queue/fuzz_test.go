package queue

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

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
		valid := err == nil && job != "" && n >= 0
		if valid && (h.Seq != n || h.JobID != job) {
			t.Fatalf("valid entry %q/%q decoded as %+v", job, seq, h)
		}
		if !valid && h.Seq != -1 {
			t.Fatalf("invalid entry %q/%q decoded as %+v", job, seq, h)
		}
	})
}

package schedsync_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/infra/schedsync"
)

func TestExpressionConvertsRobfigToEventBridge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ cron, tz, want, wantTZ string }{
		// Plain fields; the unrestricted day takes "?".
		{"* * * * *", "", "cron(* * * * ? *)", "UTC"},
		{"30 2 * * *", "", "cron(30 2 * * ? *)", "UTC"},
		{"0 9 1 * *", "", "cron(0 9 1 * ? *)", "UTC"},
		{"0 9 15 6 *", "", "cron(0 9 15 6 ? *)", "UTC"},
		// Day of week: robfig 0-6 from Sunday, EventBridge 1-7 from Sunday.
		{"0 9 * * 0", "", "cron(0 9 ? * 1 *)", "UTC"},
		{"0 9 * * 6", "", "cron(0 9 ? * 7 *)", "UTC"},
		{"0 9 * * 1-5", "", "cron(0 9 ? * 2-6 *)", "UTC"},
		{"0 9 * * 0,3,6", "", "cron(0 9 ? * 1,4,7 *)", "UTC"},
		{"0 9 * * 1-3,5", "", "cron(0 9 ? * 2-4,6 *)", "UTC"},
		// Names pass through, upper case; mixed with numbers.
		{"0 9 * * mon-fri", "", "cron(0 9 ? * MON-FRI *)", "UTC"},
		{"0 9 * * SUN", "", "cron(0 9 ? * SUN *)", "UTC"},
		{"0 9 * * mon-5", "", "cron(0 9 ? * MON-6 *)", "UTC"},
		{"0 0 1 jan,jul *", "", "cron(0 0 1 JAN,JUL ? *)", "UTC"},
		// "?" in robfig is "*".
		{"0 9 ? * 1", "", "cron(0 9 ? * 2 *)", "UTC"},
		{"0 9 1 * ?", "", "cron(0 9 1 * ? *)", "UTC"},
		// Steps: over "*" from the field's first value, from a value, over
		// a range that ends the field, over a range (written out).
		{"*/15 * * * *", "", "cron(0/15 * * * ? *)", "UTC"},
		{"5/10 * * * *", "", "cron(5/10 * * * ? *)", "UTC"},
		{"0 */6 * * *", "", "cron(0 0/6 * * ? *)", "UTC"},
		{"0 0 */2 * *", "", "cron(0 0 1/2 * ? *)", "UTC"},
		{"0 0 1 */3 *", "", "cron(0 0 1 1/3 ? *)", "UTC"},
		{"0 0 * * */2", "", "cron(0 0 ? * 1/2 *)", "UTC"},
		{"0 0 * * 1/2", "", "cron(0 0 ? * 2/2 *)", "UTC"},
		{"10-50/20 * * * *", "", "cron(10,30,50 * * * ? *)", "UTC"},
		{"40-59/5 * * * *", "", "cron(40/5 * * * ? *)", "UTC"},
		{"0 9 * * 1-5/2", "", "cron(0 9 ? * 2,4,6 *)", "UTC"},
		{"*/90 * * * *", "", "cron(0 * * * ? *)", "UTC"},
		{"*/1 * * * *", "", "cron(* * * * ? *)", "UTC"},
		// A day field with "*" in a list is unrestricted, as robfig says.
		{"0 9 *,5 * 1", "", "cron(0 9 ? * 2 *)", "UTC"},
		// Six fields: seconds must be 0 and are dropped.
		{"0 30 2 * * *", "", "cron(30 2 * * ? *)", "UTC"},
		{"0 0 12 * * 1-5", "", "cron(0 12 ? * 2-6 *)", "UTC"},
		// Descriptors.
		{"@hourly", "", "cron(0 * * * ? *)", "UTC"},
		{"@daily", "", "cron(0 0 * * ? *)", "UTC"},
		{"@midnight", "", "cron(0 0 * * ? *)", "UTC"},
		{"@weekly", "", "cron(0 0 ? * 1 *)", "UTC"},
		{"@monthly", "", "cron(0 0 1 * ? *)", "UTC"},
		{"@yearly", "", "cron(0 0 1 1 ? *)", "UTC"},
		{"@annually", "", "cron(0 0 1 1 ? *)", "UTC"},
		// Timezones: given, or in a CRON_TZ=/TZ= prefix.
		{"0 9 * * 1-5", "Europe/Berlin", "cron(0 9 ? * 2-6 *)", "Europe/Berlin"},
		{"CRON_TZ=America/New_York 0 9 * * *", "", "cron(0 9 * * ? *)", "America/New_York"},
		{"TZ=Asia/Tokyo @daily", "", "cron(0 0 * * ? *)", "Asia/Tokyo"},
		{"TZ=Asia/Tokyo 0 9 * * *", "Asia/Tokyo", "cron(0 9 * * ? *)", "Asia/Tokyo"},
		{"  0 9 * * *  ", "", "cron(0 9 * * ? *)", "UTC"},
	} {
		got, tz, err := schedsync.Expression(tc.cron, tc.tz)
		require.NoError(t, err, tc.cron)
		require.Equal(t, tc.want, got, tc.cron)
		require.Equal(t, tc.wantTZ, tz, tc.cron)
	}
}

func TestExpressionRefusesWhatEventBridgeCannotSay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ cron, tz, says string }{
		{"30 * * * * *", "", "seconds other than 0"},
		{"*/10 * * * * *", "", "seconds other than 0"},
		{"* * * * * *", "", "seconds other than 0"},
		{"@every 10m", "", "interval"},
		{"0 9 1 * 1", "", "both day of month and day of week"},
		{"0 9 1-7 * mon", "", "both day of month and day of week"},
		{"0 9 */2 * */2", "", "both day of month and day of week"},
		{"TZ=Asia/Tokyo 0 9 * * *", "Europe/Berlin", "timezone"},
	} {
		_, _, err := schedsync.Expression(tc.cron, tc.tz)
		require.ErrorContains(t, err, tc.says, tc.cron)
	}
}

func TestExpressionRejectsBadInputNamingIt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ cron, tz, says string }{
		{"", "", "does not parse"},
		{"61 * * * *", "", "does not parse"},
		{"* * * * 7", "", "does not parse"},
		{"* * * *", "", "does not parse"},
		{"@fortnightly", "", "does not parse"},
		{"0 9 * * *", "Mars/Olympus", `timezone "Mars/Olympus"`},
	} {
		_, _, err := schedsync.Expression(tc.cron, tc.tz)
		require.ErrorContains(t, err, tc.says, tc.cron)
	}
}

// TestExpressionFiresWhenRobfigDoes checks the conversion by meaning, not
// by text: the next 40 fire times of each converted expression, worked
// out by a small EventBridge cron evaluator, are robfig's.
func TestExpressionFiresWhenRobfigDoes(t *testing.T) {
	t.Parallel()
	parser := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	for _, expr := range []string{
		"* * * * *", "30 2 * * *", "0 9 15 6 *", "0 9 * * 0", "0 9 * * 6", "0 9 * * 1-5", "0 9 * * 0,3,6",
		"0 9 * * mon-fri", "0 9 * * mon-5", "0 0 1 jan,jul *", "0 9 ? * 1", "*/15 * * * *", "5/10 * * * *",
		"0 */6 * * *", "0 0 */2 * *", "0 0 1 */3 *", "0 0 * * */2", "0 0 * * 1/2", "10-50/20 * * * *",
		"40-59/5 * * * *", "0 9 * * 1-5/2", "*/90 * * * *", "0 9 *,5 * 1", "0 0 12 * * 1-5",
		"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "0 0 29 2 *", "0 12 31 * *",
	} {
		for _, tz := range []string{"", "Asia/Tokyo"} {
			got, zone, err := schedsync.Expression(expr, tz)
			require.NoError(t, err, expr)
			loc, err := time.LoadLocation(zone)
			require.NoError(t, err)
			sched, err := parser.Parse(expr)
			require.NoError(t, err)
			if s, ok := sched.(*cron.SpecSchedule); ok {
				s.Location = loc
			}
			from := time.Date(2027, 3, 10, 7, 23, 0, 0, loc)
			var want []time.Time
			// robfig gives up (zero) past a 5-year gap: 29 February 2096
			// is followed by 2104.
			for at := sched.Next(from); len(want) < 40 && !at.IsZero(); at = sched.Next(at) {
				want = append(want, at)
			}
			require.Equal(t, want, eventBridgeNext(t, got, from, loc, len(want)), "%s in %q → %s", expr, tz, got)
		}
	}
}

// eventBridgeNext is the next n times after from that the EventBridge
// expression "cron(min hour dom month dow year)" fires, for the syntax
// Expression writes: *, ?, numbers, names, a-b, a/n, lists.
func eventBridgeNext(t *testing.T, expr string, from time.Time, loc *time.Location, n int) []time.Time {
	t.Helper()
	inner, ok := strings.CutPrefix(expr, "cron(")
	require.True(t, ok, expr)
	f := strings.Fields(strings.TrimSuffix(inner, ")"))
	require.Len(t, f, 6, expr)
	require.Equal(t, "*", f[5])
	require.True(t, (f[2] == "?") != (f[4] == "?"), "%s: exactly one day field is ?", expr)
	months := map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
	days := map[string]int{"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
	set := func(field string, lo, hi int, names map[string]int) map[int]bool {
		num := func(s string) int {
			if v, ok := names[s]; ok {
				return v
			}
			v, err := strconv.Atoi(s)
			require.NoError(t, err, "%s: %q", expr, s)
			require.True(t, v >= lo && v <= hi, "%s: %d out of %d-%d", expr, v, lo, hi)
			return v
		}
		out := map[int]bool{}
		for part := range strings.SplitSeq(field, ",") {
			switch base, step, stepped := strings.Cut(part, "/"); {
			case part == "*" || part == "?":
				for v := lo; v <= hi; v++ {
					out[v] = true
				}
			case stepped:
				s, err := strconv.Atoi(step)
				require.NoError(t, err)
				for v := num(base); v <= hi; v += s {
					out[v] = true
				}
			default:
				a, b, isRange := strings.Cut(part, "-")
				if !isRange {
					b = a
				}
				for v := num(a); v <= num(b); v++ {
					out[v] = true
				}
			}
		}
		return out
	}
	mins, hours := set(f[0], 0, 59, nil), set(f[1], 0, 23, nil)
	doms, mons, dows := set(f[2], 1, 31, nil), set(f[3], 1, 12, months), set(f[4], 1, 7, days)
	var out []time.Time
	for day := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, loc); len(out) < n; day = day.AddDate(0, 0, 1) {
		require.Less(t, day.Year(), from.Year()+200, "%s fires fewer than %d times in two centuries", expr, n)
		if !mons[int(day.Month())] || !doms[day.Day()] || !dows[int(day.Weekday())+1] {
			continue
		}
		for h := 0; h < 24 && len(out) < n; h++ {
			for m := 0; m < 60 && len(out) < n; m++ {
				if at := time.Date(day.Year(), day.Month(), day.Day(), h, m, 0, 0, loc); hours[h] && mins[m] && at.After(from) {
					out = append(out, at)
				}
			}
		}
	}
	return out
}

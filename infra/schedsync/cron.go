package schedsync

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // timezones are checked where the sweep runs (Lambda has no zoneinfo)

	"github.com/robfig/cron/v3"
)

// robfigParser accepts what runfleet's automations accept: 5 fields, 6
// with seconds first, and descriptors.
var robfigParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// descriptors are the robfig descriptors EventBridge can express, as
// 5-field expressions (robfig gives them second 0).
var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// cronField is one field of a robfig expression, with robfig's bounds.
type cronField struct {
	name     string
	min, max int
	names    map[string]int // robfig's names, lower case
	// shift is added to a number to get EventBridge's: day of week is 0-6
	// from Sunday in robfig, 1-7 from Sunday in EventBridge.
	shift int
}

var (
	minuteField = cronField{name: "minute", min: 0, max: 59}
	hourField   = cronField{name: "hour", min: 0, max: 23}
	domField    = cronField{name: "day of month", min: 1, max: 31}
	monthField  = cronField{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}}
	dowField = cronField{name: "day of week", min: 0, max: 6, shift: 1, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}}
)

// notExpressible is why EventBridge cannot run an automation's schedule;
// the sweep fires such automations instead.
type notExpressible struct{ why string }

func (e *notExpressible) Error() string { return e.why }

func cannot(format string, args ...any) error {
	return &notExpressible{why: fmt.Sprintf(format, args...)}
}

// Expression converts a robfig cron expression, as runfleet's automations
// take it (5 fields, 6 with seconds first, or a descriptor, optionally
// after CRON_TZ=/TZ=), and its timezone to an EventBridge schedule
// expression "cron(minutes hours day-of-month month day-of-week year)" and
// the IANA timezone it runs in ("UTC" when none is given).
//
// EventBridge differs from robfig in three ways that matter: it has no
// seconds, its day of week counts 1-7 from Sunday (robfig 0-6), and one of
// day-of-month and day-of-week must be "?" (robfig fires when either
// matches if both are restricted, which EventBridge cannot say). An
// expression it cannot express (seconds other than 0, @every, both days
// restricted) returns an error that says why; so does an expression that
// does not parse.
func Expression(expr, timezone string) (schedule, tz string, err error) {
	expr = strings.TrimSpace(expr)
	if rest, ok := cutTZ(expr); ok {
		inline, body, _ := strings.Cut(rest, " ")
		if timezone != "" && timezone != inline {
			return "", "", cannot("cron %q names timezone %s but the automation's timezone is %s", expr, inline, timezone)
		}
		timezone, expr = inline, strings.TrimSpace(body)
	}
	tz = timezone
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return "", "", fmt.Errorf("timezone %q is not a known IANA timezone", tz)
	}
	if _, err := robfigParser.Parse(expr); err != nil {
		return "", "", fmt.Errorf("cron %q does not parse: %v", expr, err)
	}
	if strings.HasPrefix(expr, "@every") {
		return "", "", cannot("cron %q is an interval from the scheduler's start, which EventBridge cannot express", expr)
	}
	if d, ok := descriptors[strings.ToLower(expr)]; ok {
		expr = d
	}
	fields := strings.Fields(expr)
	if len(fields) == 6 {
		if fields[0] != "0" {
			return "", "", cannot("cron %q fires on seconds other than 0; EventBridge fires at most once a minute, on the minute", expr)
		}
		fields = fields[1:]
	}
	spec := []cronField{minuteField, hourField, domField, monthField, dowField}
	out := make([]string, len(fields))
	for i, f := range fields {
		v, err := spec[i].convert(f)
		if err != nil {
			return "", "", err
		}
		out[i] = v
	}
	// robfig fires when day of month AND day of week match if either is
	// "*" (or "?"), and when EITHER matches if both are restricted.
	domAny, dowAny := isAny(fields[2]), isAny(fields[4])
	switch {
	case domAny && dowAny, !domAny && dowAny:
		out[4] = "?"
	case domAny && !dowAny:
		out[2] = "?"
	default:
		return "", "", cannot("cron %q restricts both day of month and day of week (it fires when either matches); EventBridge allows only one of them", expr)
	}
	return "cron(" + strings.Join(out, " ") + " *)", tz, nil
}

// cutTZ strips a CRON_TZ= or TZ= prefix.
func cutTZ(expr string) (string, bool) {
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if rest, ok := strings.CutPrefix(expr, p); ok {
			return rest, true
		}
	}
	return "", false
}

// isAny reports whether robfig treats a day field as unrestricted: it
// marks a field so when any part of it is "*" or "?" without a step.
func isAny(field string) bool {
	for part := range strings.SplitSeq(field, ",") {
		base, step, hasStep := strings.Cut(part, "/")
		if (base == "*" || base == "?") && (!hasStep || step == "1") {
			return true
		}
	}
	return false
}

// convert rewrites one robfig field in EventBridge's syntax.
func (f cronField) convert(field string) (string, error) {
	if isAny(field) {
		return "*", nil
	}
	parts := strings.Split(field, ",")
	out := make([]string, 0, len(parts))
	for _, part := range parts {
		v, err := f.convertPart(part)
		if err != nil {
			return "", err
		}
		out = append(out, v)
	}
	return strings.Join(out, ","), nil
}

// convertPart rewrites one comma-separated element: a value, a range,
// a step over "*", from a value, or over a range.
func (f cronField) convertPart(part string) (string, error) {
	base, stepText, hasStep := strings.Cut(part, "/")
	lo, hi, isRange := strings.Cut(base, "-")
	if !hasStep {
		if !isRange {
			return f.value(lo)
		}
		a, err := f.value(lo)
		if err != nil {
			return "", err
		}
		b, err := f.value(hi)
		if err != nil {
			return "", err
		}
		return a + "-" + b, nil
	}
	step, err := strconv.Atoi(stepText)
	if err != nil || step < 1 {
		return "", fmt.Errorf("%s field %q: bad step", f.name, part)
	}
	start, end := f.min, f.max
	if base != "*" && base != "?" {
		if start, err = f.number(lo); err != nil {
			return "", err
		}
		if isRange {
			if end, err = f.number(hi); err != nil {
				return "", err
			}
		}
	}
	if step > end-start {
		// One value: EventBridge may refuse a step longer than the field.
		return strconv.Itoa(start + f.shift), nil
	}
	if end == f.max {
		// "a/n" means from a to the end, in both syntaxes.
		return strconv.Itoa(start+f.shift) + "/" + strconv.Itoa(step), nil
	}
	// A stepped range is written out: EventBridge documents steps only
	// from a start value.
	vals := make([]string, 0, (end-start)/step+1)
	for v := start; v <= end; v += step {
		vals = append(vals, strconv.Itoa(v+f.shift))
	}
	return strings.Join(vals, ","), nil
}

// value converts a number or name; names pass through in upper case,
// which EventBridge accepts for months and days of week.
func (f cronField) value(s string) (string, error) {
	if _, ok := f.names[strings.ToLower(s)]; ok {
		return strings.ToUpper(s), nil
	}
	n, err := f.number(s)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(n + f.shift), nil
}

// number is the robfig value of a number or name.
func (f cronField) number(s string) (int, error) {
	if n, ok := f.names[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < f.min || n > f.max {
		return 0, fmt.Errorf("%s field value %q: want %d-%d", f.name, s, f.min, f.max)
	}
	return n, nil
}

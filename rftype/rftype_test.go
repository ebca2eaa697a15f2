package rftype

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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

func TestTaskIdentifierEncodesAsNameAndVersion(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(TaskIdentifier{Name: "Resize", Version: "v1.2"})
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"Resize","version":"v1.2"}`, string(b))
}

func TestParseKeepsNameAndCanonicalisesVersion(t *testing.T) {
	t.Parallel()
	id, err := TaskIdentifier{Name: "Resize", Version: "v01.2"}.Parse()
	require.NoError(t, err)
	require.Equal(t, Identifier{Name: "Resize", Major: 1, Minor: 2}, id)
	require.Equal(t, TaskIdentifier{Name: "Resize", Version: "v1.2"}, id.TaskIdentifier())
	require.Equal(t, "Resize@v1.2", id.String())
}

func TestInvalidIdentifiersSayWhatIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, version, want string }{
		{"", "v1.0", `invalid task identifier: name "" must be 1 to 256 bytes`},
		{strings.Repeat("x", 257), "v1.0", "must be 1 to 256 bytes"},
		{"Noop", "1.0", `invalid task identifier: version "1.0" of task "Noop" must look like v1.2 (vMAJOR.MINOR)`},
		{"Noop", "v1000001.0", "has a number out of range"},
	} {
		err := TaskIdentifier{Name: tc.name, Version: tc.version}.Validate()
		require.ErrorIs(t, err, ErrInvalidIdentifier)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestMinorVersionsAddMajorVersionsBreak(t *testing.T) {
	t.Parallel()
	parse := func(v string) Identifier {
		id, err := ParseIdentifier("T", v)
		require.NoError(t, err)
		return id
	}
	require.True(t, parse("v1.5").CanRun(parse("v1.3")))
	require.True(t, parse("v1.3").CanRun(parse("v1.3")))
	require.False(t, parse("v1.2").CanRun(parse("v1.3")))
	require.False(t, parse("v2.0").CanRun(parse("v1.3")))
}

func TestSlugErrorsNameTheKindAndWrapErrInvalidSlug(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "0", "bench-dev", strings.Repeat("a", 100)} {
		require.NoError(t, ValidateSlug("cluster", ok), ok)
		require.True(t, ValidSlug(ok), ok)
	}
	for _, bad := range []string{"", "-a", "A", "a_b", "a b", strings.Repeat("a", 101), "a\n"} {
		err := ValidateSlug("workflow", bad)
		require.ErrorIs(t, err, ErrInvalidSlug, bad)
		var se *SlugError
		require.True(t, errors.As(err, &se))
		require.Equal(t, SlugError{Kind: "workflow", Slug: bad}, *se)
		require.False(t, ValidSlug(bad), bad)
	}
	require.EqualError(t, ValidateSlug("cluster", "Bad_Slug"),
		`invalid cluster slug "Bad_Slug": use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit`)
}

func TestReleaseIDsAre64LowercaseHexDigits(t *testing.T) {
	t.Parallel()
	require.NoError(t, ValidateReleaseID(strings.Repeat("0a", 32)))
	for _, bad := range []string{"", "abc", strings.Repeat("0A", 32), strings.Repeat("0a", 33)} {
		require.ErrorIs(t, ValidateReleaseID(bad), ErrInvalidReleaseID, bad)
	}
	require.EqualError(t, ValidateReleaseID("abc"), `invalid release id "abc": want the 64 lowercase hex digits of a SHA-256`)
}

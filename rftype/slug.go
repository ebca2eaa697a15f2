package rftype

import (
	"errors"
	"regexp"
	"strconv"
)

// SlugPattern is the rule every cluster, workflow and deploy target slug
// matches.
const SlugPattern = `^[a-z0-9][a-z0-9-]{0,99}$`

// SlugRule is SlugPattern in words, as error messages give it.
const SlugRule = "use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit"

var slugRE = regexp.MustCompile(SlugPattern)

// ErrInvalidSlug is wrapped by every slug validation error, whatever the
// slug names.
var ErrInvalidSlug = errors.New("invalid slug")

// SlugError is the error of ValidateSlug.
type SlugError struct {
	// Kind is what the slug names: "cluster", "workflow" or "target".
	Kind string
	// Slug is the value refused.
	Slug string
}

// Error reads, e.g., `invalid cluster slug "Bad_Slug": use 1 to 100
// lowercase letters, digits and dashes, starting with a letter or digit`.
func (e *SlugError) Error() string {
	return "invalid " + e.Kind + " slug " + strconv.Quote(e.Slug) + ": " + SlugRule
}

// Is makes errors.Is(err, ErrInvalidSlug) true.
func (e *SlugError) Is(target error) bool { return target == ErrInvalidSlug }

// ValidSlug reports whether s matches SlugPattern.
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

// ValidateSlug checks that s is a slug; kind says what it names ("cluster",
// "workflow", "target") and appears in the error, a *SlugError.
func ValidateSlug(kind, s string) error {
	if !slugRE.MatchString(s) {
		return &SlugError{Kind: kind, Slug: s}
	}
	return nil
}

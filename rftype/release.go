package rftype

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// ReleaseIDLength is the length of a release id: the hex digits of a SHA-256.
const ReleaseIDLength = 2 * sha256.Size

// ErrInvalidReleaseID is wrapped when a release id is not 64 lowercase hex
// digits.
var ErrInvalidReleaseID = errors.New("invalid release id")

// ValidateReleaseID checks that id is a release id: the 64 lowercase hex
// digits of a SHA-256.
func ValidateReleaseID(id string) error {
	if len(id) != ReleaseIDLength || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("%w %q: want the 64 lowercase hex digits of a SHA-256", ErrInvalidReleaseID, id)
	}
	return nil
}

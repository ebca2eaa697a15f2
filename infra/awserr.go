package infra

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// isCode reports whether err is an AWS API error with one of codes.
func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// isAlreadyExists reports whether err says a create found the resource
// there already, in any of the ways the services say it.
func isAlreadyExists(err error) bool {
	return isCode(err, "EntityAlreadyExists", "ResourceConflictException", "ResourceAlreadyExistsException",
		"ConflictException", "BucketAlreadyOwnedByYou")
}

// isNotFound reports whether err says the resource does not exist, in any
// of the ways the services say it.
func isNotFound(err error) bool {
	if isCode(err, "NotFound", "NoSuchBucket", "NoSuchEntity", "ResourceNotFoundException",
		"ParameterNotFound", "NotFoundException", "NoSuchTagSet", "NoSuchTagSetError",
		"NoSuchLifecycleConfiguration", "NoSuchPublicAccessBlockConfiguration") {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 404
}

// canonicalJSON normalises a policy document as IAM and Lambda return it
// (URL-encoded, any key order) so it compares equal to what was written.
func canonicalJSON(doc string) string {
	if !strings.HasPrefix(strings.TrimSpace(doc), "{") {
		if dec, err := url.QueryUnescape(doc); err == nil {
			doc = dec
		}
	}
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		return doc
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

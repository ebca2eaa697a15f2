package controlplane

import (
	"context"
	"errors"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// Token scopes, from least to most: a higher scope includes the lower ones.
const (
	ScopeRead   = "read"
	ScopeSubmit = "submit"
	ScopeAdmin  = "admin"
)

// TokenSpec describes a token to create.
type TokenSpec struct {
	Name     string   // required, unique among live tokens
	Scope    string   // read, submit or admin
	Clusters []string // empty: every cluster
	// Rate is the sustained requests per second allowed (default 50) and
	// Burst the bucket size (default 100).
	Rate  float64
	Burst int
}

// Token is a token as stored: everything but the secret.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scope     string    `json:"scope"`
	Clusters  []string  `json:"clusters,omitempty"`
	Rate      float64   `json:"rate"`
	Burst     int       `json:"burst"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateToken stores a new token and returns it with its secret, which is
// shown once and never stored.
func CreateToken(ctx context.Context, c *workflows.Client, spec TokenSpec) (Token, string, error) {
	return Token{}, "", errors.New("not yet")
}

// ListTokens returns every token, by name.
func ListTokens(ctx context.Context, c *workflows.Client) ([]Token, error) {
	return nil, errors.New("not yet")
}

// RevokeToken deletes the token with this id or name.
func RevokeToken(ctx context.Context, c *workflows.Client, idOrName string) (Token, error) {
	return Token{}, errors.New("not yet")
}

package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runfleet/runfleet/rftype"
	"github.com/runfleet/runfleet/workflows"
)

// Token scopes, from least to most: a higher scope includes the lower ones.
const (
	ScopeRead   = "read"
	ScopeSubmit = "submit"
	ScopeAdmin  = "admin"
)

// Default token rate limits.
const (
	DefaultTokenRate  = 50.0
	DefaultTokenBurst = 100
)

// tokenPrefix starts every token, so a leaked one is easy to recognise
// (secret scanners, logs).
const tokenPrefix = "rf_"

func scopeRank(s string) int {
	switch s {
	case ScopeRead:
		return 1
	case ScopeSubmit:
		return 2
	case ScopeAdmin:
		return 3
	}
	return 0
}

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
	// Hash is the hex SHA-256 of the secret.
	Hash string `json:"hash"`
}

// allows reports whether the token may act on cluster.
func (t Token) allows(cluster string) bool {
	return len(t.Clusters) == 0 || slices.Contains(t.Clusters, cluster)
}

func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateToken stores a new token and returns it with its secret, which is
// shown once and never stored.
func CreateToken(ctx context.Context, c *workflows.Client, spec TokenSpec) (Token, string, error) {
	if strings.TrimSpace(spec.Name) == "" {
		return Token{}, "", errors.New("create token: name is empty")
	}
	if scopeRank(spec.Scope) == 0 {
		return Token{}, "", fmt.Errorf("create token: scope %q is not one of read, submit, admin", spec.Scope)
	}
	for _, cl := range spec.Clusters {
		if err := rftype.ValidateSlug("cluster", cl); err != nil {
			return Token{}, "", fmt.Errorf("create token: %w", err)
		}
	}
	if missing, err := c.Queue().MissingClusters(ctx, spec.Clusters); err != nil {
		return Token{}, "", err
	} else if len(missing) > 0 {
		return Token{}, "", fmt.Errorf("create token: %w: %s", workflows.ErrClusterNotFound, strings.Join(missing, ", "))
	}
	if spec.Rate < 0 || spec.Burst < 0 {
		return Token{}, "", errors.New("create token: rate and burst must not be negative")
	}
	if spec.Rate == 0 {
		spec.Rate = DefaultTokenRate
	}
	if spec.Burst == 0 {
		spec.Burst = DefaultTokenBurst
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return Token{}, "", err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	hash := hashToken(secret)
	t := Token{ID: hash[:12], Name: spec.Name, Scope: spec.Scope, Clusters: spec.Clusters,
		Rate: spec.Rate, Burst: spec.Burst, CreatedAt: time.Now().UTC().Truncate(time.Millisecond), Hash: hash}
	b, _ := json.Marshal(t)
	if err := c.Queue().PutToken(ctx, t.Name, hash, b); err != nil {
		return Token{}, "", fmt.Errorf("create token: %w", err)
	}
	return t, secret, nil
}

// ListTokens returns every token, by name.
func ListTokens(ctx context.Context, c *workflows.Client) ([]Token, error) {
	recs, err := c.Queue().Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(recs))
	for _, b := range recs {
		var t Token
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("decode token: %w", err)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ErrTokenNotFound is returned for a token id or name that does not exist.
var ErrTokenNotFound = errors.New("token not found")

// RevokeToken deletes the token with this id or name.
func RevokeToken(ctx context.Context, c *workflows.Client, idOrName string) (Token, error) {
	all, err := ListTokens(ctx, c)
	if err != nil {
		return Token{}, err
	}
	for _, t := range all {
		if t.ID == idOrName || t.Name == idOrName {
			return t, c.Queue().DeleteToken(ctx, t.Name, t.Hash)
		}
	}
	return Token{}, fmt.Errorf("%w: %q (see runfleet token list)", ErrTokenNotFound, idOrName)
}

// authenticate returns the token whose secret is presented, or false.
func (s *Server) authenticate(ctx context.Context, secret string) (Token, bool, error) {
	if !strings.HasPrefix(secret, tokenPrefix) {
		return Token{}, false, nil
	}
	hash := hashToken(secret)
	b, err := s.cfg.Client.Queue().TokenByHash(ctx, hash)
	if err != nil || b == nil {
		return Token{}, false, err
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return Token{}, false, fmt.Errorf("decode token: %w", err)
	}
	// The lookup was by hash already; the comparison is constant-time so
	// that no code path compares secret material byte by byte.
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
		return Token{}, false, nil
	}
	return t, true, nil
}

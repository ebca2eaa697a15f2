package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// What the web console (package console) needs of tokens and automations:
// it logs people in with the API's tokens and shows the automations, so it
// checks and reads them the way the API does.

// AuthenticateToken returns the live token whose secret is presented, or
// false for an unknown or revoked one.
func AuthenticateToken(ctx context.Context, c *workflows.Client, secret string) (Token, bool, error) {
	return (&Server{cfg: Config{Client: c}}).authenticate(ctx, secret)
}

// TokenByHash returns the live token with this hash (Token.Hash), or false
// once it is revoked. A console session holds the hash, not the secret, and
// looks the token up on each request, so revoking a token ends its sessions.
func TokenByHash(ctx context.Context, c *workflows.Client, hash string) (Token, bool, error) {
	b, err := c.Queue().TokenByHash(ctx, hash)
	if err != nil || b == nil {
		return Token{}, false, err
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return Token{}, false, fmt.Errorf("decode token: %w", err)
	}
	return t, true, nil
}

// Allows reports whether the token may see and act on cluster.
func (t Token) Allows(cluster string) bool { return t.allows(cluster) }

// Permits reports whether the token's scope includes scope (read < submit
// < admin).
func (t Token) Permits(scope string) bool { return scopeRank(t.Scope) >= scopeRank(scope) }

// NextRun is when the automation's cron schedule fires next after t; zero
// for a storage automation, a paused one or an expression that no longer
// parses.
func (a Automation) NextRun(t time.Time) time.Time {
	if a.Cron == "" || a.Paused {
		return time.Time{}
	}
	s, err := parseCron(a.Cron, a.Timezone)
	if err != nil {
		return time.Time{}
	}
	return s.Next(t)
}

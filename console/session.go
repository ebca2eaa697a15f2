package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/runfleet/runfleet/controlplane"
)

// sessionCookie names the cookie holding the session id.
const sessionCookie = "runfleet_session"

// Login attempts per client address: enough for people, too few to try
// tokens (which are 256 random bits anyway).
const (
	loginRate  = 1.0
	loginBurst = 10
)

// sessionRecord is a session as stored in Redis.
type sessionRecord struct {
	// TokenHash finds the token (controlplane.Token.Hash): the session
	// keeps the token's scope and clusters as they are now, and ends when
	// the token is revoked.
	TokenHash string    `json:"token_hash"`
	CSRF      string    `json:"csrf"`
	Created   time.Time `json:"created"`
}

// session is the login of one request.
type session struct {
	hash  string // of the session id
	csrf  string
	token controlplane.Token
}

// canAct reports whether the session may retry and cancel jobs.
func (s *session) canAct() bool { return s.token.Permits(controlplane.ScopeSubmit) }

func randomID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// secureRequest reports whether the browser reached us over TLS, directly
// or through a proxy that says so; the cookie is then Secure.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// authed wraps h with the session check: a page without a valid session
// sends the browser to the login page (other requests get 401), and a POST
// must carry the session's CSRF token and come from this origin.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			c.internalError(w, r, nil, "read session", err)
			return
		}
		if s == nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/events") {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.errorPage(w, r, nil, http.StatusUnauthorized, "Not logged in",
				"Your session has ended or was never started.", "Log in again with a token.")
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				c.errorPage(w, r, s, http.StatusForbidden, "Refused",
					"This form was sent from another site.", "Use the console's own pages.")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			got := r.PostFormValue("csrf")
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				c.errorPage(w, r, s, http.StatusForbidden, "Refused",
					"The form did not carry this session's security (CSRF) token, so nothing was changed.",
					"Reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	}
}

// sameOrigin reports whether a POST comes from a page of this host, as far
// as the browser says: Origin when sent, else Sec-Fetch-Site. SameSite
// cookies and the CSRF token are the main defence; this is a second one.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	site := r.Header.Get("Sec-Fetch-Site")
	return site == "" || site == "same-origin" || site == "none"
}

// session returns the request's session, nil when it has none that is live
// (no cookie, expired, logged out, or its token revoked).
func (c *Console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	ctx, cancel := pageContext(r)
	defer cancel()
	hash := hashID(ck.Value)
	b, err := c.q.ConsoleSession(ctx, hash)
	if err != nil || b == nil {
		return nil, err
	}
	var rec sessionRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode console session: %w", err)
	}
	tok, ok, err := controlplane.TokenByHash(ctx, c.cfg.Client, rec.TokenHash)
	if err != nil || !ok {
		return nil, err
	}
	return &session{hash: hash, csrf: rec.CSRF, token: tok}, nil
}

type loginView struct {
	Next    string
	Problem string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, http.StatusOK, "login", "Log in", loginView{Next: localPath(r.URL.Query().Get("next"))})
}

// localPath keeps next if it is a path of this site, so the login page
// cannot send anyone elsewhere; else "/jobs". Control characters are
// refused too: browsers drop tabs and newlines from a Location, so
// "/\t/evil.example" would arrive as "//evil.example", another site.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") ||
		strings.ContainsFunc(next, unicode.IsControl) {
		return "/jobs"
	}
	return next
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := pageContext(r)
	defer cancel()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	view := loginView{Next: localPath(r.PostFormValue("next"))}
	refuse := func(status int, problem string) {
		view.Problem = problem
		c.render(w, r, nil, status, "login", "Log in", view)
	}
	if !sameOrigin(r) {
		refuse(http.StatusForbidden, "This login form was sent from another site.")
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	allowed, _, err := c.q.TakeRequest(ctx, "console-login:"+host, loginRate, loginBurst)
	if err != nil {
		c.internalError(w, r, nil, "rate limit", err)
		return
	}
	if !allowed {
		refuse(http.StatusTooManyRequests, "Too many login attempts from your address; wait a few seconds and try again.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("token"))
	if secret == "" {
		refuse(http.StatusBadRequest, "Paste a token to log in.")
		return
	}
	tok, ok, err := controlplane.AuthenticateToken(ctx, c.cfg.Client, secret)
	if err != nil {
		c.internalError(w, r, nil, "check token", err)
		return
	}
	if !ok {
		c.log.Warn("console: login refused", "remote", host)
		refuse(http.StatusUnauthorized, "That token is unknown or revoked: login refused. "+
			"Tokens start with rf_; create one with: runfleet token create --name NAME --scope read")
		return
	}
	id, err := randomID()
	if err != nil {
		c.internalError(w, r, nil, "start session", err)
		return
	}
	csrf, err := randomID()
	if err != nil {
		c.internalError(w, r, nil, "start session", err)
		return
	}
	b, _ := json.Marshal(sessionRecord{TokenHash: tok.Hash, CSRF: csrf, Created: c.cfg.Now().UTC()})
	if err := c.q.PutConsoleSession(ctx, hashID(id), b, c.cfg.SessionTTL); err != nil {
		c.internalError(w, r, nil, "start session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: int(c.cfg.SessionTTL.Seconds())})
	c.log.Info("console: logged in", "token", tok.Name, "scope", tok.Scope, "remote", host)
	http.Redirect(w, r, view.Next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := pageContext(r)
	defer cancel()
	if err := c.q.DeleteConsoleSession(ctx, s.hash); err != nil {
		c.internalError(w, r, s, "end session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// TokenName, Scope and CanAct are for the templates.
func (s *session) TokenName() string { return s.token.Name }
func (s *session) Scope() string     { return s.token.Scope }
func (s *session) CanAct() bool      { return s.canAct() }

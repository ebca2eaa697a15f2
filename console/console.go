package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// Config configures a Console. Client is required.
type Config struct {
	// Client reaches Redis. Required.
	Client *workflows.Client
	// Logger receives errors and logins. Default slog.Default().
	Logger *slog.Logger
	// SessionTTL is how long a login lasts. Default 12 hours.
	SessionTTL time.Duration
	// GraphCache is how many graphs of finished jobs are kept in memory;
	// negative keeps none. Default 16.
	GraphCache int
	// InlineGraphTasks is the most tasks a job may have for its page to
	// draw its graph before answering; a bigger job's page loads the graph
	// after it has shown (the graph reads every task). Default
	// DefaultInlineGraphTasks; negative always loads it after.
	InlineGraphTasks int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// LivePing is how often an idle live stream sends a comment (so
	// proxies keep it open) and checks that its session is still live; a
	// stream whose session ended (logged out, token revoked) closes then.
	// Default 15 s.
	LivePing time.Duration
}

// DefaultSessionTTL is how long a console login lasts by default.
const DefaultSessionTTL = 12 * time.Hour

// Console serves the web console.
type Console struct {
	cfg    Config
	log    *slog.Logger
	q      *queue.Queue
	pages  *pages
	mux    *http.ServeMux
	graphs *graphCache
	hub    *hub
}

// New checks cfg and returns a Console. Close it to end its live streams.
func New(cfg Config) (*Console, error) {
	if cfg.Client == nil {
		return nil, errors.New("console: Config.Client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.InlineGraphTasks == 0 {
		cfg.InlineGraphTasks = DefaultInlineGraphTasks
	}
	if cfg.GraphCache == 0 {
		cfg.GraphCache = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: cfg.Logger, q: cfg.Client.Queue(), pages: p,
		graphs: newGraphCache(cfg.GraphCache)}
	c.hub = newHub(c)
	c.mux = c.routes()
	return c, nil
}

// Close ends the live streams the console serves; pages still open
// reconnect to whatever serves the address next.
func (c *Console) Close() { c.hub.close() }

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/{file}", serveStatic)
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.authed(c.logout))
	mux.HandleFunc("GET /{$}", c.authed(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/jobs", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /jobs", c.authed(c.jobsPage))
	mux.HandleFunc("GET /jobs/{id}", c.authed(c.jobPage))
	mux.HandleFunc("GET /jobs/{id}/graph.svg", c.authed(c.jobGraph))
	mux.HandleFunc("GET /jobs/{id}/events", c.authed(c.jobEvents))
	mux.HandleFunc("GET /jobs/{id}/logs", c.authed(c.jobLogsPage))
	mux.HandleFunc("POST /jobs/{id}/retry", c.authed(c.changeJob("retry")))
	mux.HandleFunc("POST /jobs/{id}/cancel", c.authed(c.changeJob("cancel")))
	mux.HandleFunc("GET /jobs/{id}/tasks/{seq}", c.authed(c.taskPage))
	mux.HandleFunc("GET /clusters", c.authed(c.clustersPage))
	mux.HandleFunc("GET /automations", c.authed(c.automationsPage))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "Page not found",
			"There is no page at "+r.URL.Path+".", "")
	})
	return mux
}

// ServeHTTP serves the console's pages.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The pages load nothing but their own CSS and script: no inline
	// script, no other origin, no framing.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	c.mux.ServeHTTP(w, r)
}

// Mount serves api (the HTTP API v1 and its health check) under /v1/ and
// /healthz and the console at every other path, so one listener serves
// both.
func Mount(api http.Handler, con *Console) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.HasPrefix(p, "/v1/") || p == "/v1" || p == "/healthz" {
			api.ServeHTTP(w, r)
			return
		}
		con.ServeHTTP(w, r)
	})
}

// requestTimeout bounds the Redis reads of one page.
const requestTimeout = 30 * time.Second

func pageContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), requestTimeout)
}

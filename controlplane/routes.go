package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"go.opentelemetry.io/otel/propagation"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 1 << 20

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("POST /v1/jobs", s.authed(ScopeSubmit, s.submitJob))
	mux.HandleFunc("GET /v1/jobs", s.authed(ScopeRead, s.listJobs))
	mux.HandleFunc("GET /v1/jobs/{id}", s.authed(ScopeRead, s.getJob))
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", s.authed(ScopeSubmit, s.changeJob("cancel")))
	mux.HandleFunc("POST /v1/jobs/{id}/retry", s.authed(ScopeSubmit, s.changeJob("retry")))
	mux.HandleFunc("GET /v1/clusters", s.authed(ScopeRead, s.listClusters))
	mux.HandleFunc("POST /v1/events/s3", s.authed(ScopeSubmit, s.s3Webhook))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, "not-found", "Not Found",
			fmt.Sprintf("no route %s %s (see the HTTP API v1 in the README)", r.Method, r.URL.Path), "")
	})
	return mux
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Field names the request field that is wrong, when one is.
	Field string `json:"field,omitempty"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, kind, title, detail, field string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: "urn:runfleet:problem:" + kind, Title: title, Status: status,
		Detail: detail, Instance: r.URL.Path, Field: field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Client.Queue().Ping(ctx); err != nil {
		s.log.Warn("health check: redis does not answer", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "redis unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type tokenKey struct{}

// authed wraps h with authentication (a bearer token of at least scope) and
// the token's rate limit.
func (s *Server) authed(scope string, h func(http.ResponseWriter, *http.Request, Token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="runfleet"`)
			writeProblem(w, r, http.StatusUnauthorized, "unauthenticated", "Unauthorized",
				"send a token as Authorization: Bearer <token> (create one with `runfleet token create`)", "")
			return
		}
		tok, ok, err := s.authenticate(r.Context(), secret)
		if err != nil {
			s.internalError(w, r, "authenticate", err)
			return
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="runfleet", error="invalid_token"`)
			writeProblem(w, r, http.StatusUnauthorized, "invalid-token", "Unauthorized",
				"the token is unknown or revoked", "")
			return
		}
		if scopeRank(tok.Scope) < scopeRank(scope) {
			writeProblem(w, r, http.StatusForbidden, "insufficient-scope", "Forbidden",
				fmt.Sprintf("token %q has scope %s; this request needs %s", tok.Name, tok.Scope, scope), "")
			return
		}
		allowed, wait, err := s.cfg.Client.Queue().TakeRequest(r.Context(), tok.ID, tok.Rate, tok.Burst)
		if err != nil {
			s.internalError(w, r, "rate limit", err)
			return
		}
		if !allowed {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeProblem(w, r, http.StatusTooManyRequests, "rate-limited", "Too Many Requests",
				fmt.Sprintf("token %q is over its limit of %g requests/s (burst %d)", tok.Name, tok.Rate, tok.Burst), "")
			return
		}
		h(w, r, tok)
	}
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
// MinIO's webhook target sends its auth token the same way.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error("api: "+what, "method", r.Method, "path", r.URL.Path, "err", err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		writeProblem(w, r, http.StatusServiceUnavailable, "unavailable", "Service Unavailable",
			what+": timed out; try again", "")
		return
	}
	writeProblem(w, r, http.StatusInternalServerError, "internal", "Internal Server Error",
		what+" failed; try again (the server log has the cause)", "")
}

// readBody reads a JSON body of at most MaxBodyBytes into v, refusing
// unknown fields. It writes the problem itself and returns false on error.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := readLimited(w, r)
	if !ok {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err != nil {
		detail, field := describeJSONError(err)
		writeProblem(w, r, http.StatusBadRequest, "malformed-json", "Bad Request", detail, field)
		return false
	}
	return true
}

// readLimited reads a body of at most MaxBodyBytes. It writes the problem
// itself (413 beyond the limit) and returns false on error.
func readLimited(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "Content Too Large",
			fmt.Sprintf("the request body is over %d bytes", MaxBodyBytes), "")
		return nil, false
	}
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "bad-body", "Bad Request", "read body: "+err.Error(), "")
		return nil, false
	}
	return body, true
}

// describeJSONError turns a decoding error into a message and the field it
// concerns.
func describeJSONError(err error) (string, string) {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonType(te.Type.Kind().String()), te.Value), te.Field
	case errors.As(err, &se):
		return fmt.Sprintf("the body is not valid JSON (at byte %d): %v", se.Offset, se), ""
	case errors.Is(err, io.EOF):
		return "the body is empty; send a JSON object", ""
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fmt.Sprintf("unknown field %q", f), f
	}
	return "the body is not valid JSON: " + err.Error(), ""
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "int32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return kind
}

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request, tok Token) {
	var req SubmitJobRequest
	if !readBody(w, r, &req) {
		return
	}
	for _, f := range []struct{ name, val string }{{"cluster", req.Cluster}, {"name", req.Name},
		{"task", req.Task}, {"version", req.Version}} {
		if strings.TrimSpace(f.val) == "" {
			writeProblem(w, r, http.StatusUnprocessableEntity, "invalid-field", "Unprocessable Content",
				fmt.Sprintf("field %q is required", f.name), f.name)
			return
		}
	}
	if !tok.allows(req.Cluster) {
		writeProblem(w, r, http.StatusForbidden, "cluster-forbidden", "Forbidden",
			fmt.Sprintf("token %q may not submit to cluster %q", tok.Name, req.Cluster), "cluster")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		writeProblem(w, r, http.StatusBadRequest, "invalid-header", "Bad Request",
			"the Idempotency-Key header is over 255 characters", "Idempotency-Key")
		return
	}
	if key != "" {
		// Keys are per token, so two clients cannot collide by accident.
		key = "api:" + tok.ID + ":" + key
	}
	// A caller's W3C traceparent header makes the job part of its trace.
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	j, created, err := s.cfg.Client.Jobs().SubmitOnce(ctx, workflows.SubmitRequest{
		Name: req.Name, Cluster: req.Cluster, Task: workflows.NewTaskIdentifier(req.Task, req.Version),
		Input: req.Input, MaxRetries: req.MaxRetries, Notify: req.Notify, IdempotencyKey: key})
	if err != nil {
		s.submitError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/jobs/"+j.ID)
		s.log.Info("api: job submitted", "job", j.ID, "cluster", j.Cluster, "token", tok.Name)
	}
	writeJSON(w, status, j)
}

// submitError maps a submission error to a problem naming the field.
func (s *Server) submitError(w http.ResponseWriter, r *http.Request, err error) {
	unprocessable := func(field string) {
		writeProblem(w, r, http.StatusUnprocessableEntity, "invalid-field", "Unprocessable Content", err.Error(), field)
	}
	switch {
	case errors.Is(err, workflows.ErrClusterNotFound), errors.Is(err, workflows.ErrInvalidSlug):
		unprocessable("cluster")
	case errors.Is(err, workflows.ErrUnknownTask):
		unprocessable("task")
	case errors.Is(err, workflows.ErrInvalidTask):
		field := "version"
		if strings.Contains(err.Error(), "name") {
			field = "task"
		}
		unprocessable(field)
	case errors.Is(err, workflows.ErrInvalidInput):
		unprocessable("input")
	case errors.Is(err, workflows.ErrInputTooLarge):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "input-too-large", "Content Too Large", err.Error(), "input")
	case errors.Is(err, workflows.ErrIdempotencyConflict):
		writeProblem(w, r, http.StatusUnprocessableEntity, "idempotency-conflict", "Unprocessable Content",
			"this Idempotency-Key was used within the last 24 h for a different request", "Idempotency-Key")
	case strings.Contains(err.Error(), "max retries"):
		unprocessable("max_retries")
	case strings.Contains(err.Error(), "job name is empty"):
		unprocessable("name")
	case strings.Contains(err.Error(), "notify URL"):
		unprocessable("notify")
	default:
		s.internalError(w, r, "submit job", err)
	}
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, tok Token) {
	j, ok := s.loadJob(w, r, tok)
	if ok {
		writeJSON(w, http.StatusOK, j)
	}
}

// loadJob reads the job of the path's {id}, refusing clusters the token
// may not see. It writes the problem itself and returns false on error.
func (s *Server) loadJob(w http.ResponseWriter, r *http.Request, tok Token) (workflows.Job, bool) {
	id := r.PathValue("id")
	j, err := s.cfg.Client.Jobs().Get(r.Context(), id)
	if errors.Is(err, workflows.ErrJobNotFound) {
		writeProblem(w, r, http.StatusNotFound, "job-not-found", "Not Found", fmt.Sprintf("no job %q", id), "")
		return j, false
	}
	if err != nil {
		s.internalError(w, r, "get job", err)
		return j, false
	}
	if !tok.allows(j.Cluster) {
		writeProblem(w, r, http.StatusForbidden, "cluster-forbidden", "Forbidden",
			fmt.Sprintf("token %q may not see jobs of cluster %q", tok.Name, j.Cluster), "")
		return j, false
	}
	return j, true
}

func (s *Server) changeJob(action string) func(http.ResponseWriter, *http.Request, Token) {
	return func(w http.ResponseWriter, r *http.Request, tok Token) {
		j, ok := s.loadJob(w, r, tok)
		if !ok {
			return
		}
		var err error
		if action == "cancel" {
			err = s.cfg.Client.Jobs().Cancel(r.Context(), j.ID)
		} else {
			err = s.cfg.Client.Jobs().Retry(r.Context(), j.ID)
		}
		switch {
		case errors.Is(err, workflows.ErrJobCompleted):
			writeProblem(w, r, http.StatusConflict, "job-completed", "Conflict",
				fmt.Sprintf("job %q is completed; there is nothing to %s", j.ID, action), "")
			return
		case errors.Is(err, workflows.ErrJobNotFound):
			writeProblem(w, r, http.StatusNotFound, "job-not-found", "Not Found", err.Error(), "")
			return
		case err != nil && strings.Contains(err.Error(), "archived"):
			writeProblem(w, r, http.StatusConflict, "job-archived", "Conflict", err.Error(), "")
			return
		case err != nil:
			s.internalError(w, r, action+" job", err)
			return
		}
		s.log.Info("api: job "+action, "job", j.ID, "token", tok.Name)
		if j, ok = s.loadJob(w, r, tok); ok {
			writeJSON(w, http.StatusOK, j)
		}
	}
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, tok Token) {
	q := r.URL.Query()
	cluster, state := q.Get("cluster"), q.Get("state")
	if cluster == "" && len(tok.Clusters) == 1 {
		cluster = tok.Clusters[0]
	}
	if cluster == "" && len(tok.Clusters) > 1 {
		writeProblem(w, r, http.StatusForbidden, "cluster-forbidden", "Forbidden",
			fmt.Sprintf("token %q may only list jobs of %s; pass cluster=", tok.Name, strings.Join(tok.Clusters, ", ")), "cluster")
		return
	}
	if cluster != "" && !tok.allows(cluster) {
		writeProblem(w, r, http.StatusForbidden, "cluster-forbidden", "Forbidden",
			fmt.Sprintf("token %q may not list jobs of cluster %q", tok.Name, cluster), "cluster")
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeProblem(w, r, http.StatusBadRequest, "invalid-parameter", "Bad Request",
				fmt.Sprintf("limit %q is not a number from 1 to 1000", v), "limit")
			return
		}
		limit = n
	}
	if state != "" && !validState(state) {
		writeProblem(w, r, http.StatusBadRequest, "invalid-parameter", "Bad Request",
			fmt.Sprintf("state %q is not one of %s", state, strings.Join(workflows.JobStates, ", ")), "state")
		return
	}
	jobs, next, err := s.cfg.Client.Queue().ListJobsPage(r.Context(), queue.ListJobsParams{
		Cluster: cluster, State: state, Limit: limit, Cursor: q.Get("cursor")})
	if errors.Is(err, queue.ErrInvalidCursor) {
		writeProblem(w, r, http.StatusBadRequest, "invalid-parameter", "Bad Request", err.Error(), "cursor")
		return
	}
	if err != nil {
		s.internalError(w, r, "list jobs", err)
		return
	}
	if jobs == nil {
		jobs = []workflows.Job{}
	}
	writeJSON(w, http.StatusOK, JobPage{Jobs: jobs, NextCursor: next})
}

func validState(s string) bool {
	for _, st := range workflows.JobStates {
		if s == st {
			return true
		}
	}
	return false
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request, tok Token) {
	all, err := s.cfg.Client.Clusters().List(r.Context())
	if err != nil {
		s.internalError(w, r, "list clusters", err)
		return
	}
	out := make([]workflows.Cluster, 0, len(all))
	for _, c := range all {
		if tok.allows(c.Slug) {
			out = append(out, c)
		}
	}
	writeJSON(w, http.StatusOK, ClusterList{Clusters: out})
}

// s3Webhook takes S3 event notifications as MinIO's webhook target (or an
// S3-to-HTTP bridge) posts them.
func (s *Server) s3Webhook(w http.ResponseWriter, r *http.Request, tok Token) {
	body, ok := readLimited(w, r)
	if !ok {
		return
	}
	var ev events.S3Event
	if err := json.Unmarshal(body, &ev); err != nil {
		detail, field := describeJSONError(err)
		writeProblem(w, r, http.StatusBadRequest, "malformed-json", "Bad Request", detail, field)
		return
	}
	rep, err := s.handleS3EventAs(r.Context(), ev, &tok)
	if err != nil {
		s.internalError(w, r, "handle s3 event", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

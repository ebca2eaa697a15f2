package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// FaultKind is what a Fault does to a request.
type FaultKind int

const (
	// FaultStatus answers with Fault.Status and an S3-style XML error
	// instead of forwarding the request.
	FaultStatus FaultKind = iota + 1
	// FaultReset resets the connection (TCP RST) without answering.
	FaultReset
	// FaultCut forwards the request and cuts the connection after
	// Fault.After bytes of the response body. Only responses with a body
	// longer than After count.
	FaultCut
	// FaultDropRange turns a ranged response (206) into a plain 200 without
	// Content-Range, as a server or proxy that ignores Range would answer.
	FaultDropRange
)

// Fault is one kind of failure for the next Count matching requests.
type Fault struct {
	Kind   FaultKind
	Count  int    // how many requests get it; default 1
	Method string // only requests with this method; default any
	Status int    // FaultStatus: the status code; default 503
	After  int64  // FaultCut: body bytes let through before the cut
	// FaultStatus: the Retry-After header of the answer ("" for none).
	RetryAfter string
}

// errFaultCut ends a response body at an injected cut, on the proxy's side.
var errFaultCut = errors.New("testenv: injected body cut")

// FaultProxy is an HTTP reverse proxy on a free loopback port in front of
// a real server, which fails requests on demand: error statuses, reset
// connections, bodies cut mid-way, slow bodies. It keeps the Host header
// the client sent, so signed requests (AWS SigV4) stay valid.
type FaultProxy struct {
	URL string // http://127.0.0.1:port

	srv *httptest.Server

	mu       sync.Mutex
	faults   []*Fault
	rate     int64 // response body bytes per second; 0: unlimited
	requests int64
	injected int64
}

// StartFaultProxy starts a FaultProxy forwarding to target, a base URL
// such as http://127.0.0.1:9000. Close stops it.
func StartFaultProxy(target string) (*FaultProxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("fault proxy: bad target %q", target)
	}
	p := &FaultProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
		ModifyResponse: p.modifyResponse,
		// Flush every write, so a cut body reaches the client up to the cut.
		FlushInterval: -1,
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, rp)
	}))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.URL = p.srv.URL
	return p, nil
}

// NewFaultProxy starts a FaultProxy in front of target for one test and
// closes it when the test ends.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	p, err := StartFaultProxy(target)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and closes its connections.
func (p *FaultProxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// Inject adds a fault. Faults are used in the order they were added.
func (p *FaultProxy) Inject(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	if f.Kind == FaultStatus && f.Status == 0 {
		f.Status = http.StatusServiceUnavailable
	}
	p.mu.Lock()
	p.faults = append(p.faults, &f)
	p.mu.Unlock()
}

// FailNext answers the next n requests with status.
func (p *FaultProxy) FailNext(n, status int) {
	p.Inject(Fault{Kind: FaultStatus, Count: n, Status: status})
}

// ResetNext resets the connections of the next n requests.
func (p *FaultProxy) ResetNext(n int) { p.Inject(Fault{Kind: FaultReset, Count: n}) }

// CutNext cuts the next n response bodies longer than after bytes, after
// those bytes.
func (p *FaultProxy) CutNext(n int, after int64) {
	p.Inject(Fault{Kind: FaultCut, Count: n, After: after})
}

// Throttle slows every response body to bytesPerSecond; 0 lifts it.
func (p *FaultProxy) Throttle(bytesPerSecond int64) {
	p.mu.Lock()
	p.rate = bytesPerSecond
	p.mu.Unlock()
}

// Clear drops the pending faults and the throttle.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	p.faults, p.rate = nil, 0
	p.mu.Unlock()
}

// Requests is how many requests reached the proxy.
func (p *FaultProxy) Requests() int64 { p.mu.Lock(); defer p.mu.Unlock(); return p.requests }

// Injected is how many faults were injected (throttling not counted).
func (p *FaultProxy) Injected() int64 { p.mu.Lock(); defer p.mu.Unlock(); return p.injected }

// Pending is how many injections the added faults have left.
func (p *FaultProxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.faults {
		n += f.Count
	}
	return n
}

// take uses up one injection of the first fault that matches.
func (p *FaultProxy) take(match func(*Fault) bool) *Fault {
	for i, f := range p.faults {
		if f.Count > 0 && match(f) {
			f.Count--
			if f.Count == 0 {
				p.faults = append(p.faults[:i:i], p.faults[i+1:]...)
			}
			p.injected++
			c := *f
			return &c
		}
	}
	return nil
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	p.mu.Lock()
	p.requests++
	f := p.take(func(f *Fault) bool {
		return (f.Kind == FaultStatus || f.Kind == FaultReset) && (f.Method == "" || f.Method == r.Method)
	})
	p.mu.Unlock()
	switch {
	case f == nil:
		next.ServeHTTP(flushHeader{w}, r)
	case f.Kind == FaultStatus:
		// Read the request first, as a server does before it answers.
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>InternalError</Code><Message>testenv: injected %d</Message><RequestId>fault</RequestId></Error>`, f.Status)
	case f.Kind == FaultReset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST, not FIN
		}
		_ = conn.Close()
	}
}

// flushHeader sends the response header as soon as it is written, so a
// body cut right away still reaches the client as a response with a short
// body, not as a connection closed before any answer.
type flushHeader struct{ http.ResponseWriter }

func (w flushHeader) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if code >= 200 { // a 1xx is sent at once; flushing would add a 200
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

func (w flushHeader) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// modifyResponse applies cuts and the throttle to a proxied response.
func (p *FaultProxy) modifyResponse(resp *http.Response) error {
	p.mu.Lock()
	rate := p.rate
	f := p.take(func(f *Fault) bool {
		return f.Kind == FaultCut && (f.Method == "" || f.Method == resp.Request.Method) &&
			(resp.ContentLength < 0 || resp.ContentLength > f.After)
	})
	var drop *Fault
	if resp.StatusCode == http.StatusPartialContent {
		drop = p.take(func(f *Fault) bool { return f.Kind == FaultDropRange })
	}
	p.mu.Unlock()
	if drop != nil {
		resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
		resp.Header.Del("Content-Range")
	}
	if f != nil {
		// The reverse proxy aborts the connection when the body read fails,
		// so the client gets fewer bytes than Content-Length promised.
		resp.Body = &cutBody{ReadCloser: resp.Body, left: f.After}
	}
	if rate > 0 {
		resp.Body = &slowBody{ReadCloser: resp.Body, ctx: resp.Request.Context(), rate: rate}
	}
	return nil
}

type cutBody struct {
	io.ReadCloser
	left int64
}

func (c *cutBody) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errFaultCut
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.ReadCloser.Read(b)
	c.left -= int64(n)
	return n, err
}

// slowBody passes at most rate bytes a second, in pieces of a tenth of that.
type slowBody struct {
	io.ReadCloser
	ctx  context.Context
	rate int64
}

func (s *slowBody) Read(b []byte) (int, error) {
	if piece := max(s.rate/10, 1); int64(len(b)) > piece {
		b = b[:piece]
	}
	n, err := s.ReadCloser.Read(b)
	if n > 0 {
		t := time.NewTimer(time.Duration(n) * time.Second / time.Duration(s.rate))
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return n, s.ctx.Err()
		}
	}
	return n, err
}

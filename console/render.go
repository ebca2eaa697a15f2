package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/runfleet/runfleet/internal/jobgraph"
)

//go:embed assets
var assets embed.FS

// pageNames are the templates under assets/, each rendered inside
// layout.html.
var pageNames = []string{"login", "jobs", "job", "task", "logs", "clusters", "automations", "error"}

type pages struct {
	byName map[string]*template.Template
}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse page %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// frame is what layout.html needs around every page.
type frame struct {
	Title   string
	Section string // the navigation entry to mark current
	Session *session
	CSRF    string
	Page    any
}

// render writes page name with data; on a template error nothing half
// written reaches the browser.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name, title string, data any) {
	f := frame{Title: title, Section: name, Session: s, Page: data}
	if s != nil {
		f.CSRF = s.csrf
	}
	if name == "job" || name == "task" || name == "logs" {
		f.Section = "jobs"
	}
	var b bytes.Buffer
	if err := c.pages.byName[name].Execute(&b, f); err != nil {
		c.log.Error("console: render page", "page", name, "err", err)
		http.Error(w, "the console could not render this page; the server log has the cause", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

type errorView struct {
	Status  int
	Heading string
	Message string
	Hint    string
}

// errorPage answers with a page saying what went wrong and what to do.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, heading, message, hint string) {
	c.render(w, r, s, status, "error", heading, errorView{Status: status, Heading: heading, Message: message, Hint: hint})
}

// badFilter answers 400 naming the query parameter that is wrong.
func (c *Console) badFilter(w http.ResponseWriter, r *http.Request, s *session, name, message string) {
	c.errorPage(w, r, s, http.StatusBadRequest, "Bad filter: "+name, message,
		"Fix the "+name+" filter, or start again from the list without filters.")
}

func (c *Console) internalError(w http.ResponseWriter, r *http.Request, s *session, what string, err error) {
	c.log.Error("console: "+what, "method", r.Method, "path", r.URL.Path, "err", err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		c.errorPage(w, r, s, http.StatusServiceUnavailable, "Timed out", what+": Redis did not answer in time.", "Try again.")
		return
	}
	c.errorPage(w, r, s, http.StatusInternalServerError, "Something went wrong", what+" failed.",
		"Try again; the server log has the cause.")
}

// staticFiles are the embedded CSS and script, with an ETag each.
var staticFiles = func() map[string]staticFile {
	out := map[string]staticFile{}
	_ = fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := path.Ext(p)
		if ext != ".css" && ext != ".js" {
			return nil
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := "text/css; charset=utf-8"
		if ext == ".js" {
			ctype = "text/javascript; charset=utf-8"
		}
		out[path.Base(p)] = staticFile{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	return out
}()

type staticFile struct {
	body  []byte
	etag  string
	ctype string
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	f, ok := staticFiles[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(f.body)
}

// funcs are the template helpers: numbers and times in the CLI's words.
var funcs = template.FuncMap{
	"commas": func(n any) string {
		switch v := n.(type) {
		case int:
			return jobgraph.Commas(int64(v))
		case int64:
			return jobgraph.Commas(v)
		}
		return fmt.Sprint(n)
	},
	"when":      when,
	"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago":       ago,
	"took":      took,
	"age":       age,
	"firstLine": firstLine,
	"percent":   percent,
	"short":     short,
	"plus1":     func(n int64) int64 { return n + 1 },
	"minus1":    func(n int64) int64 { return n - 1 },
	"query":     queryString,
	"devices":   devices,
}

// when is a time as the CLI prints it, in UTC; "—" when unset.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago is how long ago t was, roughly: "3s ago", "5m ago", "2h ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return age(time.Since(t)) + " ago"
}

// age is a duration rounded for people: 850ms, 12.3s, 4m05s, 3h02m, 2d4h.
func age(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// took is the time from start to end (to now while running); "" before
// the start.
func took(start, end time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = time.Now()
	}
	return age(end.Sub(start))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// percent is part/whole in whole percent, for progress bars.
func percent(part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	return min(100, part*100/whole)
}

// short cuts s to n runes with "…".
func short(n int, s string) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// queryString builds "?k=v&..." from pairs, leaving out empty values.
func queryString(kv ...any) template.URL {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		v := fmt.Sprint(kv[i+1])
		if v == "" {
			continue
		}
		if b.Len() == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(fmt.Sprint(kv[i])) + "=" + url.QueryEscape(v))
	}
	return template.URL(b.String())
}

package project

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/internal/atomicfile"
	"github.com/runfleet/runfleet/protocol"
)

// DefaultDescribeTimeout bounds how long a release binary may take to print
// its describe output.
const DefaultDescribeTimeout = 30 * time.Second

// maxDescribeBytes bounds the describe output read from a binary.
const maxDescribeBytes = artifacts.MaxManifestBytes

// describeHint tells the user how to make a binary serve describe mode.
const describeHint = "does not serve describe mode: call workflows.ServeReleaseModes first thing in main"

// BuildOptions configures Build.
type BuildOptions struct {
	// Out is the artifact file to write, replaced atomically if it exists.
	// Default: <Config.Dir>/dist/<workflow>.tar.zst.
	Out string
	// GoCmd is the go command to build with. Default: "go" on $PATH.
	GoCmd string
	// Log receives one progress line per step. Default: nil, discarded.
	Log io.Writer
	// DescribeTimeout bounds the binary's describe mode. Default:
	// DefaultDescribeTimeout (30 s).
	DescribeTimeout time.Duration
}

// BuildResult is a packed release.
type BuildResult struct {
	// Path is the absolute path of the artifact written.
	Path string `json:"path"`
	// ReleaseID is the artifact's release id, the hex SHA-256 of its bytes.
	ReleaseID string `json:"release_id"`
	// Manifest is the artifact's manifest.
	Manifest artifacts.Manifest `json:"manifest"`
	// Size is the artifact's size in bytes.
	Size int64 `json:"size"`
}

// Build cross-compiles cfg's main package for each of cfg.Platforms
// (CGO_ENABLED=0, -trimpath, no VCS stamping, no build id, stripped; GOFLAGS
// from the environment apply), runs the binary for the host platform in
// describe mode to learn its task identifiers, and packs the binaries and
// their manifest into a deterministic artifact: the same source and
// toolchain give the same bytes and release id. (A local replace directive's
// directory is recorded in the binaries, so the same source built against an
// SDK checkout elsewhere differs.)
//
// The manifest's build metadata holds the Go version and, when cfg.Dir is in
// a clean git work tree, the commit; a dirty tree or no repository omits the
// revision rather than recording something that varies.
func Build(ctx context.Context, cfg Config, opts BuildOptions) (BuildResult, error) {
	if cfg.Main == "" {
		cfg.Main = "."
	}
	if cfg.Platforms == nil {
		cfg.Platforms = slices.Clone(artifacts.Platforms)
	}
	if cfg.Dir == "" {
		return BuildResult{}, errors.New("build: Config.Dir is empty: load the config with project.Load or project.Find")
	}
	if err := cfg.validate(); err != nil {
		return BuildResult{}, fmt.Errorf("build: %s: %w", cfg.Path(), err)
	}
	platforms := canonicalPlatforms(cfg.Platforms)
	if st, err := os.Stat(cfg.MainDir()); err != nil || !st.IsDir() {
		return BuildResult{}, fmt.Errorf("build: %s: main %q: %s is not a directory", cfg.Path(), cfg.Main, cfg.MainDir())
	}
	goCmd := cmp.Or(opts.GoCmd, "go")
	timeout := opts.DescribeTimeout
	if timeout <= 0 {
		timeout = DefaultDescribeTimeout
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	out := opts.Out
	if out == "" {
		out = filepath.Join(cfg.Dir, "dist", cfg.Workflow+".tar.zst")
	}
	out, err := filepath.Abs(out)
	if err != nil {
		return BuildResult{}, fmt.Errorf("build: %w", err)
	}

	if _, err := exec.LookPath(goCmd); err != nil {
		return BuildResult{}, fmt.Errorf("build: find the go command: %w (install Go from https://go.dev/dl/ and put it on $PATH)", err)
	}
	goVersion, err := goEnv(ctx, goCmd, cfg.Dir, "GOVERSION")
	if err != nil {
		return BuildResult{}, fmt.Errorf("build: %w", err)
	}

	tmp, err := os.MkdirTemp("", "runfleet-build-*")
	if err != nil {
		return BuildResult{}, fmt.Errorf("build: %w", err)
	}
	defer os.RemoveAll(tmp)

	// Build the binary this host runs first and describe it at once: a
	// binary that does not serve describe mode fails before the slower
	// cross-compiles.
	host := runtime.GOOS + "/" + runtime.GOARCH
	order := platforms
	if i := slices.Index(platforms, host); i > 0 {
		order = append([]string{host}, slices.Delete(slices.Clone(platforms), i, i+1)...)
	} else if i < 0 {
		order = append([]string{""}, platforms...) // "": the host, for describe mode only
	}
	files := make(map[string]artifacts.File, len(platforms))
	entrypoints := make(map[string]string, len(platforms))
	var (
		desc protocol.Describe
		sdk  string
	)
	for i, p := range order {
		var entry, bin string
		if p == "" {
			fmt.Fprintf(logw, "building %s (this host, to run describe mode)…\n", host)
			bin = filepath.Join(tmp, "host", cfg.Workflow)
			p = host
		} else {
			fmt.Fprintf(logw, "building %s…\n", p)
			entry = "bin/" + strings.ReplaceAll(p, "/", "-") + "/" + cfg.Workflow
			bin = filepath.Join(tmp, filepath.FromSlash(entry))
		}
		if err := goBuild(ctx, goCmd, cfg, p, bin); err != nil {
			return BuildResult{}, fmt.Errorf("build %s: %w", cfg.Workflow, err)
		}
		if entry != "" {
			files[entry] = artifacts.File{Path: bin, Executable: true}
			entrypoints[p] = entry
		}
		if i == 0 {
			fmt.Fprintf(logw, "describing tasks…\n")
			subject := fmt.Sprintf("the %s binary of %s", host, mainPkg(cfg.Main))
			if desc, err = describe(ctx, bin, subject, timeout); err != nil {
				return BuildResult{}, fmt.Errorf("build %s: %w", cfg.Workflow, err)
			}
			sdk = sdkVersion(bin)
		}
	}

	m := artifacts.Manifest{
		FormatVersion: artifacts.FormatVersion,
		Workflow:      cfg.Workflow,
		Entrypoints:   entrypoints,
		Build: artifacts.BuildInfo{
			GoVersion:      goVersion,
			SourceRevision: sourceRevision(ctx, cfg.Dir, out),
			SDKVersion:     sdk,
		},
	}
	m.Tasks = append(m.Tasks, desc.Tasks...)
	// The order Pack writes them in.
	slices.SortFunc(m.Tasks, func(a, b artifacts.TaskID) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version))
	})
	if err := m.Validate(); err != nil {
		return BuildResult{}, fmt.Errorf("build %s: the tasks %s describes: %w", cfg.Workflow, mainPkg(cfg.Main), err)
	}

	fmt.Fprintf(logw, "packing %s…\n", out)
	id, size, err := packAtomic(out, m, files)
	if err != nil {
		return BuildResult{}, fmt.Errorf("build %s: %w", cfg.Workflow, err)
	}
	return BuildResult{Path: out, ReleaseID: id, Manifest: m, Size: size}, nil
}

// goEnv returns one `go env` variable, as seen from dir (whose go.mod may
// select another toolchain).
func goEnv(ctx context.Context, goCmd, dir, name string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "env", name)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w\n%s", name, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(b)), nil
}

// buildFlags are the go build flags of a reproducible, stripped binary.
var buildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags", "-s -w -buildid="}

// goBuild builds cfg's main package for platform into out.
func goBuild(ctx context.Context, goCmd string, cfg Config, platform, out string) error {
	goos, goarch, _ := strings.Cut(platform, "/")
	pkg := mainPkg(cfg.Main)
	args := append([]string{"build"}, buildFlags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = cfg.Dir
	// Later entries win: these override the user's environment, while
	// GOFLAGS, GOPROXY and the like still apply.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("go build %s for %s in %s: %w\n%s", pkg, platform, cfg.Dir, err, strings.TrimSpace(output.String()))
	}
	return nil
}

// mainPkg is the go build package argument for main, relative to the
// config's directory.
func mainPkg(main string) string {
	pkg := filepath.ToSlash(filepath.Clean(filepath.FromSlash(main)))
	if pkg != "." && pkg != ".." && !strings.HasPrefix(pkg, "../") {
		pkg = "./" + pkg
	}
	return pkg
}

// describe runs bin in describe mode and decodes what it prints. subject
// names bin in errors.
func describe(ctx context.Context, bin, subject string, timeout time.Duration) (protocol.Describe, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(dctx, bin)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = describeEnv(os.Environ())
	stdout := &cappedBuffer{max: maxDescribeBytes}
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return protocol.Describe{}, ctx.Err()
	}
	detail := func(what string) string {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			what += "; stderr: " + s
		}
		return what
	}
	switch {
	case runErr != nil && dctx.Err() != nil:
		return protocol.Describe{}, fmt.Errorf("%s %s (%s)", subject, describeHint,
			detail(fmt.Sprintf("it was still running after %s", timeout)))
	case runErr != nil:
		return protocol.Describe{}, fmt.Errorf("%s %s (%s)", subject, describeHint, detail("describe mode failed: "+runErr.Error()))
	case stdout.overflow:
		return protocol.Describe{}, fmt.Errorf("%s %s (it printed more than %d bytes)", subject, describeHint, maxDescribeBytes)
	}
	d, err := decodeDescribe(stdout.Bytes())
	if err != nil {
		return protocol.Describe{}, fmt.Errorf("%s %s (%s)", subject, describeHint, detail(err.Error()))
	}
	return d, nil
}

// describeEnv is the environment of describe mode: the user's, without
// runfleet settings, and with a Redis URL that cannot resolve, so that a
// binary that ignores RUNFLEET_MODE cannot start taking real tasks.
func describeEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "RUNFLEET_") {
			out = append(out, kv)
		}
	}
	return append(out, protocol.ModeEnv+"="+protocol.ModeDescribe,
		"RUNFLEET_REDIS_URL=redis://describe-mode-connects-to-nothing.invalid:6379/0")
}

// decodeDescribe strictly decodes a describe output: one JSON object, no
// unknown fields, protocol 1, at least one task.
func decodeDescribe(b []byte) (protocol.Describe, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return protocol.Describe{}, errors.New("it printed nothing")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d protocol.Describe
	if err := dec.Decode(&d); err != nil {
		return protocol.Describe{}, fmt.Errorf("its output is not a describe object: %v; output: %.200q", err, b)
	}
	if _, err := dec.Token(); err != io.EOF {
		return protocol.Describe{}, fmt.Errorf("it printed more than one JSON object; output: %.200q", b)
	}
	if d.Protocol != protocol.Version {
		return protocol.Describe{}, fmt.Errorf("it speaks worker protocol %d, this runfleet speaks %d; rebuild it with this runfleet's SDK", d.Protocol, protocol.Version)
	}
	if len(d.Tasks) == 0 {
		return protocol.Describe{}, errors.New("it describes no tasks: pass the workflow's tasks to workflows.ServeReleaseModes")
	}
	return d, nil
}

// sourceRevision returns the commit of the clean git work tree holding dir,
// or "" when dir is not in one, the tree has changes, or git is missing.
func sourceRevision(ctx context.Context, dir, out string) string {
	if os.Getenv("GIT_DIR") == "" && !hasGitAncestor(dir) {
		return "" // no repository: do not even start git
	}
	git := func(args ...string) (string, bool) {
		// No optional locks: a status must not rewrite the index under an
		// editor or another git command.
		cmd := exec.CommandContext(ctx, "git", append([]string{"--no-optional-locks"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C")
		b, err := cmd.Output()
		return strings.TrimSpace(string(b)), err == nil
	}
	if inside, ok := git("rev-parse", "--is-inside-work-tree"); !ok || inside != "true" {
		return ""
	}
	// The whole work tree counts, except what builds write: the project's
	// dist/ and the artifact itself, or the next build would find the tree
	// dirty and record no revision.
	args := []string{"status", "--porcelain", "--untracked-files=normal", "--", ":/", ":(exclude)dist"}
	if rel, err := filepath.Rel(dir, out); err == nil && !strings.HasPrefix(rel, "..") {
		args = append(args, ":(exclude)"+filepath.ToSlash(rel))
	}
	if status, ok := git(args...); !ok || status != "" {
		return ""
	}
	rev, ok := git("rev-parse", "HEAD")
	if !ok {
		return ""
	}
	return rev
}

// hasGitAncestor reports whether dir or a parent holds a .git entry (a
// directory, or a file for worktrees and submodules).
func hasGitAncestor(dir string) bool {
	for d := dir; ; {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return true
		}
		parent := filepath.Dir(d)
		if parent == d {
			return false
		}
		d = parent
	}
}

// sdkVersion returns the runfleet SDK version bin was built with, when it
// is a published version ("" for a local replacement or a development
// build).
func sdkVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == SDKModule && d.Replace == nil && d.Version != zeroPseudoVersion && d.Version != "(devel)" {
			return d.Version
		}
	}
	return ""
}

// packAtomic packs the artifact into a temporary file next to out and
// renames it into place, returning the release id and size.
func packAtomic(out string, m artifacts.Manifest, files map[string]artifacts.File) (id string, size int64, err error) {
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	err = atomicfile.Write(out, filepath.Join(dir, "."+filepath.Base(out)+".tmp-*"), func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		var err error
		if id, err = artifacts.Pack(bw, m, files); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		st, err := f.Stat()
		if err != nil {
			return err
		}
		size = st.Size()
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	return id, size, nil
}

// cappedBuffer keeps the first max bytes written and notes any overflow.
type cappedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.overflow = true
		c.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

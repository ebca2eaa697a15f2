package project

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"text/template"

	"github.com/runfleet/runfleet/rftype"
)

// SDKModule is the module path of the runfleet SDK.
const SDKModule = "github.com/runfleet/runfleet"

// ErrExists is wrapped by Init when the directory already holds a project.
var ErrExists = errors.New("workflow project already exists")

// InitOptions configures Init.
type InitOptions struct {
	// Module is the Go module path of the new project. Default: the slug.
	Module string
	// Cluster is the cluster of the example target "dev". Default: "dev".
	Cluster string
	// SDKDir is a directory holding the runfleet SDK source (its go.mod);
	// go.mod gets a replace directive pointing there, since the SDK is not
	// published to a module proxy. Default: "", found from the running
	// binary when it was built from the runfleet module (next to the
	// executable or in a parent of the working directory); when it cannot
	// be found, go.mod says how to add the replace directive.
	SDKDir string
	// Tidy runs `go mod tidy` in the new project. Default: false.
	Tidy bool
	// GoCmd is the go command Tidy runs. Default: "go" on $PATH.
	GoCmd string
	// Log receives notes for the user, such as a missing SDK directory.
	// Default: nil, discarded.
	Log io.Writer
}

// Init scaffolds a workflow project named slug in dir, creating dir if
// needed: runfleet.workflow.toml, main.go (one example task, a release
// binary that is also a direct runner), go.mod and .gitignore. It never
// overwrites: it refuses a dir that already has any of the first three
// files (wrapping ErrExists). It returns the paths of the files written.
func Init(dir, slug string, opts InitOptions) ([]string, error) {
	if err := rftype.ValidateSlug("workflow", slug); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if opts.Module == "" {
		opts.Module = slug
	}
	if err := checkModulePath(opts.Module); err != nil {
		return nil, err
	}
	if opts.Cluster == "" {
		opts.Cluster = "dev"
	}
	if err := rftype.ValidateSlug("cluster", opts.Cluster); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}

	sdk := sdkInfo{version: zeroPseudoVersion, goVersion: defaultGoVersion()}
	if opts.SDKDir != "" {
		d, err := filepath.Abs(opts.SDKDir)
		if err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		gv, err := sdkGoVersion(d)
		if err != nil {
			return nil, fmt.Errorf("init: SDK directory %s: %w", d, err)
		}
		sdk.dir, sdk.goVersion = d, gv
	} else {
		sdk = detectSDK()
		if sdk.dir != "" {
			fmt.Fprintf(logw, "note: using the runfleet SDK source in %s (replace directive in go.mod)\n", sdk.dir)
		} else {
			fmt.Fprintf(logw, "note: found no runfleet SDK source; go.mod requires %s without a replace directive.\n"+
				"Point it at a checkout of the runfleet source before building:\n"+
				"  go mod edit -replace %s=/path/to/runfleet\n", SDKModule, SDKModule)
		}
	}

	files := []struct {
		name string
		data []byte
	}{
		{ConfigFile, renderConfig(slug, opts.Cluster)},
		{"main.go", nil},
		{"go.mod", renderGoMod(opts.Module, sdk)},
		{".gitignore", []byte("dist/\n")},
	}
	mainGo, err := renderMain(slug, opts.Cluster)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	files[1].data = mainGo

	var existing []string
	for _, f := range files[:3] {
		if _, err := os.Lstat(filepath.Join(absDir, f.name)); err == nil {
			existing = append(existing, f.name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("%w in %s: it already has %s; init never overwrites, choose an empty or new directory",
			ErrExists, absDir, strings.Join(existing, " and "))
	}
	if err := os.MkdirAll(absDir, 0o755); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}

	var written []string
	for _, f := range files {
		p := filepath.Join(absDir, f.name)
		ok, err := writeNew(p, f.data, f.name == ".gitignore")
		if err != nil {
			return written, fmt.Errorf("init: %w", err)
		}
		if ok {
			written = append(written, p)
		}
	}

	if opts.Tidy {
		goCmd := opts.GoCmd
		if goCmd == "" {
			goCmd = "go"
		}
		cmd := exec.Command(goCmd, "mod", "tidy")
		cmd.Dir = absDir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return written, fmt.Errorf("init: go mod tidy in %s: %w\n%s", absDir, err, strings.TrimSpace(stderr.String()))
		}
	}
	return written, nil
}

// writeNew creates path with data, never replacing an existing file. With
// merge, an existing file gets data appended unless it already holds it
// (for .gitignore); it reports whether it wrote anything.
func writeNew(path string, data []byte, merge bool) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) && merge {
		old, err := os.ReadFile(path)
		if err != nil {
			return false, err
		}
		for line := range strings.Lines(string(old)) {
			if strings.TrimSpace(line) == strings.TrimSpace(string(data)) {
				return false, nil
			}
		}
		if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
			data = append([]byte("\n"), data...)
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return false, err
		}
	} else if err != nil {
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}

var modulePathRE = regexp.MustCompile(`^[A-Za-z0-9._~+-]+(/[A-Za-z0-9._~+-]+)*$`)

func checkModulePath(p string) error {
	if !modulePathRE.MatchString(p) || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
		return invalid("module path %q: use slash-separated elements of letters, digits, dots, dashes and underscores, e.g. example.com/me/bench", p)
	}
	for e := range strings.SplitSeq(p, "/") {
		if e == "." || e == ".." {
			return invalid("module path %q contains a %q element", p, e)
		}
	}
	return nil
}

// zeroPseudoVersion is the version go.mod requires a replaced module at when
// it has no published version.
const zeroPseudoVersion = "v0.0.0-00010101000000-000000000000"

// sdkInfo is what go.mod needs to know about the runfleet SDK.
type sdkInfo struct {
	dir       string // absolute source directory for the replace; "" if unknown
	version   string // version to require
	goVersion string // go directive: the SDK's, so the project can build it
}

var releaseVersionRE = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// detectSDK finds the SDK source when this binary was built from the
// runfleet module: next to the executable or in a parent of the working
// directory.
func detectSDK() sdkInfo {
	info := sdkInfo{version: zeroPseudoVersion, goVersion: defaultGoVersion()}
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path != SDKModule {
		return info
	}
	if releaseVersionRE.MatchString(bi.Main.Version) {
		info.version = bi.Main.Version
	}
	var starts []string
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			starts = append(starts, filepath.Dir(exe))
		}
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if dir := findSDKDir(starts...); dir != "" {
		info.dir = dir
		if gv, err := sdkGoVersion(dir); err == nil {
			info.goVersion = gv
		}
		info.version = zeroPseudoVersion
	}
	return info
}

// findSDKDir returns the first directory, among starts and their parents,
// whose go.mod declares the runfleet module, or "".
func findSDKDir(starts ...string) string {
	for _, s := range starts {
		for d := s; ; {
			if _, err := sdkGoVersion(d); err == nil {
				return d
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return ""
}

var (
	moduleLineRE = regexp.MustCompile(`(?m)^module\s+"?([^"\s]+)"?\s*(//.*)?$`)
	goLineRE     = regexp.MustCompile(`(?m)^go\s+(\d+\.\d+(\.\d+)?)\s*(//.*)?$`)
)

// sdkGoVersion checks that dir/go.mod is the runfleet module and returns
// its go directive.
func sdkGoVersion(dir string) (string, error) {
	b, err := readFileLimit(filepath.Join(dir, "go.mod"), 1<<20)
	if err != nil {
		return "", err
	}
	m := moduleLineRE.FindSubmatch(b)
	if m == nil || string(m[1]) != SDKModule {
		return "", fmt.Errorf("%s is not the go.mod of %s", filepath.Join(dir, "go.mod"), SDKModule)
	}
	if g := goLineRE.FindSubmatch(b); g != nil {
		return string(g[1]), nil
	}
	return defaultGoVersion(), nil
}

// defaultGoVersion is the go directive for a project when the SDK's is
// unknown: the language version of the toolchain that built this binary.
func defaultGoVersion() string {
	v := strings.TrimPrefix(runtime.Version(), "go")
	if m := regexp.MustCompile(`^\d+\.\d+(\.\d+)?`).FindString(v); m != "" {
		return m
	}
	return "1.26"
}

func renderConfig(slug, cluster string) []byte {
	return fmt.Appendf(nil, `# runfleet workflow project: %[1]s
# See `+"`runfleet workflow build --help`"+`.

# The workflow slug: releases are published under this name.
workflow = %[2]q

# The main package, relative to this file.
main = "."

# Platforms release binaries are built for (linux/amd64, linux/arm64).
platforms = ["linux/amd64", "linux/arm64"]

# Deploy targets: `+"`runfleet workflow deploy --target dev`"+` deploys to cluster %[3]q.
[targets.dev]
cluster = %[3]q
`, slug, slug, cluster)
}

func renderGoMod(module string, sdk sdkInfo) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "module %s\n\ngo %s\n\nrequire %s %s\n", module, sdk.goVersion, SDKModule, sdk.version)
	if sdk.dir != "" {
		fmt.Fprintf(&b, "\nreplace %s => %s\n", SDKModule, goModPath(sdk.dir))
	} else {
		fmt.Fprintf(&b, `
// %[1]s is not published to a module proxy: point it at
// a checkout of its source before building, then run go mod tidy:
//
//	go mod edit -replace %[1]s=/path/to/runfleet
//
// or create the project again with `+"`runfleet workflow init --sdk DIR`"+`.
`, SDKModule)
	}
	return b.Bytes()
}

var plainPathRE = regexp.MustCompile(`^[A-Za-z0-9._/~+@:-]+$`)

// goModPath quotes a file path for go.mod when it needs quoting.
func goModPath(p string) string {
	if plainPathRE.MatchString(p) && !strings.Contains(p, "//") && !strings.Contains(p, "/*") {
		return p
	}
	return strconv.Quote(p)
}

var mainTemplate = template.Must(template.New("main.go").Parse(`// Command {{.Slug}} is the {{.Slug}} workflow. The same binary is a release
// (built by "runfleet workflow build" and run by release runners) and a
// direct runner:
//
//	go run . -cluster {{.Cluster}}
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/runfleet/runfleet/workflows"
)

// Greet is an example task. Its exported fields are its input, as JSON:
//
//	runfleet job submit --cluster {{.Cluster}} --name hello --task Greet --version v1.0 --input '{"name":"world"}'
type Greet struct {
	Name string ` + "`json:\"name\"`" + `
}

// Identifier names the task. Raise the minor version for compatible changes
// and the major version for incompatible ones.
func (*Greet) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Greet", "v1.0")
}

// Execute runs the task. It could submit subtasks with
// workflows.SubmitSubtask; this one only logs.
func (g *Greet) Execute(ctx context.Context) error {
	attrs := []any{slog.String("name", g.Name)}
	if cur, ok := workflows.CurrentTask(ctx); ok {
		attrs = append(attrs, slog.String("job_id", cur.JobID), slog.Int64("task_id", cur.TaskID))
	}
	slog.InfoContext(ctx, "hello", attrs...)
	return nil
}

// tasks are the tasks this workflow serves.
var tasks = []workflows.Task{&Greet{}}

func main() {
	// Under a release runner (RUNFLEET_MODE is set) this serves that mode and
	// exits; otherwise it returns at once and the binary is a direct runner.
	workflows.ServeReleaseModes(tasks...)

	cluster := flag.String("cluster", os.Getenv("RUNFLEET_CLUSTER"), "cluster slug to serve (default $RUNFLEET_CLUSTER)")
	concurrency := flag.Int("concurrency", 1, "tasks to run at once")
	flag.Parse()
	if *cluster == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: {{.Slug}} -cluster C [-concurrency N]  (Redis: $RUNFLEET_REDIS_URL)")
		os.Exit(2)
	}
	if err := run(*cluster, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "{{.Slug}}:", err)
		os.Exit(1)
	}
}

// run serves the cluster's tasks until SIGINT or SIGTERM, then lets running
// tasks finish and returns.
func run(cluster string, concurrency int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := workflows.NewClient(ctx) // Redis at $RUNFLEET_REDIS_URL
	if err != nil {
		return err
	}
	defer client.Close()
	runner, err := client.NewRunner(ctx, cluster, tasks...)
	if errors.Is(err, workflows.ErrClusterNotFound) {
		return fmt.Errorf("%w (create it first: runfleet cluster create %s)", err, cluster)
	}
	if err != nil {
		return err
	}
	slog.Info("runner started", slog.String("cluster", cluster), slog.String("runner_id", runner.ID()))
	return runner.RunForever(ctx, workflows.WithConcurrency(concurrency))
}
`))

func renderMain(slug, cluster string) ([]byte, error) {
	var b bytes.Buffer
	if err := mainTemplate.Execute(&b, struct{ Slug, Cluster string }{slug, cluster}); err != nil {
		return nil, fmt.Errorf("render main.go: %w", err)
	}
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format main.go: %w", err)
	}
	return src, nil
}

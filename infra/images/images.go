// Package images builds runfleet's container images on a machine that can
// reach no registry: every image is FROM scratch and gets its files from a
// build context this package lays out: static Go binaries (CGO_ENABLED=0,
// -trimpath), an /etc/passwd with the non-root user runfleet (uid 10001),
// the host's CA certificates, a /tmp, and for Redis the host's redis-server
// with the shared libraries ldd lists. The Dockerfiles beside this file say
// what each image holds; `go tool task images` and the containers backend
// of internal/testenv both build through Builder, so they make the same
// images.
//
// Rebuilding is cheap when nothing changed: go build and go install leave
// an up-to-date binary alone, and the engine's layer cache matches COPY
// steps by content, so unchanged images keep their ids.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

//go:embed */Dockerfile
var dockerfiles embed.FS

// Names lists the images, in build order.
var Names = []string{"redis", "minio", "runfleet", "runnerd"}

// Ref is the local tag of image name, e.g. runfleet/redis:dev.
func Ref(name string) string { return "runfleet/" + name + ":dev" }

// UID is the non-root user every image runs as (runfleet, group 10001).
const UID = 10001

// ErrNoEngine means no Docker engine answered; tests skip on it.
var ErrNoEngine = errors.New("no Docker engine answers")

// Config configures a Builder.
type Config struct {
	// ModuleDir is the runfleet checkout the Go binaries are built from.
	// Default: the module `go env GOMOD` finds from the working directory.
	ModuleDir string
	// BinDir keeps the built binaries between runs, so an unchanged one is
	// not linked again. Default: <user cache dir>/runfleet/images/bin.
	BinDir string
	// Logger receives progress (info) and the engine's build output
	// (debug). Default: discard.
	Logger *slog.Logger
}

// Builder builds the images with one Docker engine.
type Builder struct {
	docker    *client.Client
	moduleDir string
	binDir    string
	log       *slog.Logger
}

// NewBuilder connects to the Docker engine named by the standard
// DOCKER_HOST variables (default: the local socket) and checks it answers;
// when it does not, the error wraps ErrNoEngine.
func NewBuilder(ctx context.Context, cfg Config) (*Builder, error) {
	docker, err := Connect(ctx)
	if err != nil {
		return nil, err
	}
	b := &Builder{docker: docker, moduleDir: cfg.ModuleDir, binDir: cfg.BinDir, log: cfg.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.moduleDir == "" {
		if b.moduleDir, err = moduleDir(ctx); err != nil {
			docker.Close()
			return nil, err
		}
	}
	if b.binDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			docker.Close()
			return nil, fmt.Errorf("find a directory for image binaries: %w", err)
		}
		b.binDir = filepath.Join(cache, "runfleet", "images", "bin")
	}
	return b, nil
}

// Connect returns a client of the Docker engine named by DOCKER_HOST (or
// the local socket) once it has answered a ping, negotiating the API
// version (engine 20.10 speaks 1.41).
func Connect(ctx context.Context) (*client.Client, error) {
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoEngine, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		docker.Close()
		return nil, fmt.Errorf("%w at %s: %w", ErrNoEngine, docker.DaemonHost(), err)
	}
	return docker, nil
}

// Close releases the engine connection.
func (b *Builder) Close() error { return b.docker.Close() }

// Build builds the named images (all of Names when none is given), each
// tagged Ref(name).
func (b *Builder) Build(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		names = Names
	}
	for _, name := range names {
		if err := b.build(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// buildMu makes builders in one process build one image at a time, so
// parallel tests asking for the same missing image build it once.
var buildMu sync.Mutex

// Ensure builds those of the named images the engine does not have yet.
func (b *Builder) Ensure(ctx context.Context, names ...string) error {
	buildMu.Lock()
	defer buildMu.Unlock()
	for _, name := range names {
		if _, err := b.docker.ImageInspect(ctx, Ref(name)); err == nil {
			continue
		} else if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("inspect image %s: %w", Ref(name), err)
		}
		if err := b.build(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (b *Builder) build(ctx context.Context, name string) error {
	dockerfile, err := dockerfiles.ReadFile(name + "/Dockerfile")
	if err != nil {
		return fmt.Errorf("build image %s: unknown image (want one of %s)", name, strings.Join(Names, ", "))
	}
	start := time.Now()
	files, err := b.contextFiles(ctx, name)
	if err != nil {
		return fmt.Errorf("build image %s: %w", Ref(name), err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, dockerfile, files)) }()
	defer pr.Close()
	res, err := b.docker.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        []string{Ref(name)},
		Version:     build.BuilderV1, // no BuildKit assumed (engine 20.10)
		Remove:      true,
		ForceRemove: true,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", Ref(name), err)
	}
	defer res.Body.Close()
	if err := b.readBuildOutput(res.Body); err != nil {
		return fmt.Errorf("build image %s: %w", Ref(name), err)
	}
	b.log.Info("built image", slog.String("image", Ref(name)), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	return nil
}

// readBuildOutput follows the engine's JSON message stream and returns the
// build's error, if any.
func (b *Builder) readBuildOutput(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
		if s := strings.TrimSpace(msg.Stream); s != "" {
			b.log.Debug(s)
		}
	}
}

// file is one entry of a build context: a directory (src and data empty),
// a host file copied as it is (src), or generated bytes (data).
type file struct {
	name string // slash path inside the context
	mode fs.FileMode
	src  string
	data []byte
}

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nrunfleet:x:10001:10001:runfleet:/home/runfleet:/sbin/nologin\n"
	group  = "root:x:0:\nrunfleet:x:10001:\n"
	// caCerts is where Debian keeps the CA bundle, which Go also reads.
	caCerts = "/etc/ssl/certs/ca-certificates.crt"
)

// contextFiles lays out image name's build context: rootfs/ is copied to /
// as root; home/, cache/ and data/ are the directories the user writes.
func (b *Builder) contextFiles(ctx context.Context, name string) ([]file, error) {
	health, err := b.goBuild(ctx, "healthcheck", "./infra/images/healthcheck")
	if err != nil {
		return nil, err
	}
	files := []file{
		{name: "rootfs/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "rootfs/etc/group", mode: 0o644, data: []byte(group)},
		{name: "rootfs/tmp", mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{name: "rootfs/usr/local/bin/healthcheck", mode: 0o755, src: health},
	}
	certs := func() error {
		if _, err := os.Stat(caCerts); err != nil {
			return fmt.Errorf("CA certificates for TLS: %w (install ca-certificates)", err)
		}
		files = append(files, file{name: "rootfs" + caCerts, mode: 0o644, src: caCerts})
		return nil
	}
	dirs := func(names ...string) {
		for _, n := range names {
			files = append(files, file{name: n, mode: fs.ModeDir | 0o755})
		}
	}
	switch name {
	case "runfleet", "runnerd":
		bin, err := b.goBuild(ctx, name, "./cmd/"+name)
		if err != nil {
			return nil, err
		}
		if err := certs(); err != nil {
			return nil, err
		}
		files = append(files, file{name: "rootfs/usr/local/bin/" + name, mode: 0o755, src: bin})
		dirs("home", "cache")
	case "minio":
		bin, err := b.minio(ctx)
		if err != nil {
			return nil, err
		}
		if err := certs(); err != nil {
			return nil, err
		}
		files = append(files, file{name: "rootfs/usr/local/bin/minio", mode: 0o755, src: bin})
		dirs("home", "data")
	case "redis":
		redis, err := redisFiles(ctx)
		if err != nil {
			return nil, err
		}
		files = append(files, redis...)
		dirs("data")
	}
	return files, nil
}

// goBuild builds package pkg of the module as a static linux binary named
// name in the bin directory and returns its path. go build leaves an
// up-to-date binary as it is.
func (b *Builder) goBuild(ctx context.Context, name, pkg string) (string, error) {
	out := filepath.Join(b.binDir, "linux-"+runtime.GOARCH, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = b.moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}

// minio installs the MinIO Taskfile.yml pins (setup-minio's MINIO_VERSION)
// with CGO_ENABLED=0 into the bin directory: the host's own minio may be
// linked dynamically. The first build takes minutes; go install leaves an
// up-to-date binary as it is.
func (b *Builder) minio(ctx context.Context) (string, error) {
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("build MinIO for the image: go install cannot cross-compile into a bin directory; build the images on linux")
	}
	version, err := b.minioVersion()
	if err != nil {
		return "", err
	}
	if bin := hostStaticMinIO(ctx, version); bin != "" {
		return bin, nil
	}
	dir := filepath.Join(b.binDir, "minio-"+version)
	b.log.Info("building MinIO (minutes the first time)", slog.String("version", version))
	cmd := exec.CommandContext(ctx, "go", "install", "-trimpath", "github.com/minio/minio@"+version)
	cmd.Dir = os.TempDir() // outside any module: pkg@version stands alone
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+dir)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install minio %s: %w\n%s", version, err, msg)
	}
	return filepath.Join(dir, "minio"), nil
}

// hostStaticMinIO is the MinIO `go tool task setup-minio` installed, when
// it is the pinned version built with CGO_ENABLED=0 (static, as setup
// builds it): the image then copies that binary instead of compiling MinIO
// a second time. Empty when there is none such.
func hostStaticMinIO(ctx context.Context, version string) string {
	gobin, err := exec.CommandContext(ctx, "go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(gobin)), "\n")
	dir := strings.TrimSpace(lines[0])
	if dir == "" && len(lines) > 1 {
		dir = filepath.Join(strings.Split(strings.TrimSpace(lines[1]), string(os.PathListSeparator))[0], "bin")
	}
	bin := filepath.Join(dir, "minio")
	info, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	s := string(info)
	if !strings.Contains(s, "github.com/minio/minio\t"+version) || !strings.Contains(s, "CGO_ENABLED=0") {
		return ""
	}
	return bin
}

var minioVersionRE = regexp.MustCompile(`(?m)^\s*MINIO_VERSION:\s*(\S+)`)

// minioVersion reads the MinIO version Taskfile.yml pins.
func (b *Builder) minioVersion() (string, error) {
	taskfile := filepath.Join(b.moduleDir, "Taskfile.yml")
	data, err := os.ReadFile(taskfile)
	if err != nil {
		return "", fmt.Errorf("read the pinned MinIO version: %w", err)
	}
	m := minioVersionRE.FindSubmatch(data)
	if m == nil {
		return "", fmt.Errorf("read the pinned MinIO version: no MINIO_VERSION in %s", taskfile)
	}
	return string(m[1]), nil
}

// redisFiles are the host's redis-server (as /usr/local/bin/redis-server)
// and every shared library and loader ldd lists for it, each at the path
// ldd names, with the content of the file that path resolves to.
func redisFiles(ctx context.Context) ([]file, error) {
	bin, err := RedisServerPath()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("list the shared libraries of %s with ldd: %w", bin, err)
	}
	libs, err := parseLDD(out)
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	files := []file{{name: "rootfs/usr/local/bin/redis-server", mode: 0o755, src: bin}}
	for _, lib := range libs {
		files = append(files, file{name: "rootfs" + lib, mode: 0o755, src: lib})
	}
	return files, nil
}

// parseLDD returns the absolute paths in ldd's output: "name => /path
// (addr)" lines and the loader's "/path (addr)" line. linux-vdso has no
// file.
func parseLDD(out []byte) ([]string, error) {
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "linux-vdso") || strings.HasPrefix(line, "linux-gate") {
			continue
		}
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("a library is missing: %s", line)
		}
		p := line
		if _, after, ok := strings.Cut(line, "=>"); ok {
			p = strings.TrimSpace(after)
		}
		p, _, _ = strings.Cut(p, " (")
		if strings.HasPrefix(p, "/") {
			libs = append(libs, path.Clean(p))
		}
	}
	if len(libs) == 0 {
		return nil, errors.New("no libraries listed (a static binary needs no Redis image recipe of this kind)")
	}
	return libs, nil
}

// RedisServerPath finds redis-server: $RUNFLEET_REDIS_SERVER, then $PATH,
// then the Debian locations (/usr/bin is not always on a minimal PATH). The
// Redis image copies it, and internal/testenv runs it.
func RedisServerPath() (string, error) {
	if p := os.Getenv("RUNFLEET_REDIS_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("redis-server not found: run `go tool task setup-apt` (installs Debian's redis-server) or set RUNFLEET_REDIS_SERVER")
}

// moduleDir is the directory of the main module's go.mod.
func moduleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the runfleet module with go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the runfleet module: the working directory is outside it (run from the checkout)")
	}
	return filepath.Dir(gomod), nil
}

// contextTime is every context entry's modification time, so contexts of
// the same files are the same bytes.
var contextTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// writeContext writes the build context as a tar stream: the Dockerfile,
// then files, with every parent directory before its entries.
func writeContext(w io.Writer, dockerfile []byte, files []file) error {
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	var mkdirs func(dir string) error
	mkdirs = func(dir string) error {
		if dir == "." || dir == "/" || seen[dir] {
			return nil
		}
		if err := mkdirs(path.Dir(dir)); err != nil {
			return err
		}
		seen[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: contextTime})
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "Dockerfile", Mode: 0o644,
		Size: int64(len(dockerfile)), ModTime: contextTime}); err != nil {
		return err
	}
	if _, err := tw.Write(dockerfile); err != nil {
		return err
	}
	for _, f := range files {
		if err := mkdirs(path.Dir(f.name)); err != nil {
			return err
		}
		if f.mode.IsDir() {
			if seen[f.name] {
				continue
			}
			seen[f.name] = true
			mode := int64(f.mode.Perm())
			if f.mode&fs.ModeSticky != 0 {
				mode |= 0o1000
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: f.name + "/", Mode: mode, ModTime: contextTime}); err != nil {
				return err
			}
			continue
		}
		if err := writeFile(tw, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, f file) error {
	var r io.Reader = bytes.NewReader(f.data)
	size := int64(len(f.data))
	if f.src != "" {
		src, err := os.Open(f.src) // follows symlinks: the image gets the file itself
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		r, size = src, st.Size()
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: int64(f.mode.Perm()),
		Size: size, ModTime: contextTime}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, size); err != nil {
		return fmt.Errorf("add %s to the build context: %w", f.name, err)
	}
	return nil
}

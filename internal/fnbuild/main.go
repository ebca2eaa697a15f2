// Command fnbuild builds the Lambda functions' deployment zips, as `go tool
// task functions` runs it: for each function (functions/<name>) and
// architecture it builds a static linux binary named bootstrap for the
// provided.al2023 runtime and writes <out>/<name>-<arch>.zip holding only
// that file.
//
// The zips are reproducible: the same commit built with the same Go
// toolchain gives the same bytes, so a deployment can tell from a digest
// whether a function changed. The build is -trimpath with no build id, the
// architecture levels are pinned (GOAMD64=v1, GOARM64=v8.0) rather than
// taken from the caller's environment, and the zip entry has a fixed time
// and mode. The VCS revision stays stamped in the binary (`go version -m
// bootstrap` names the commit) because it is the same for the same commit.
//
// Usage:
//
//	go run ./internal/fnbuild [-out dist/functions] [-functions submit,sweep] [-arch arm64,amd64]
package main

import (
	"archive/zip"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/runfleet/runfleet/internal/atomicfile"
)

// zipTime is the modification time of every zip entry: the earliest an
// MS-DOS timestamp can hold, so it says "no time" to any unzip.
var zipTime = time.Date(1980, time.January, 1, 0, 0, 0, 0, time.UTC)

// options says what to build.
type options struct {
	ModuleDir string    // the module root; the functions are ./functions/<name> in it
	OutDir    string    // where the zips go (created)
	Functions []string  // e.g. submit, sweep
	Arches    []string  // GOARCH values: arm64, amd64
	Stdout    io.Writer // one line per zip with its digest; nil: silent
}

func main() {
	out := flag.String("out", "dist/functions", "directory the zips are written to")
	fns := flag.String("functions", "submit,sweep", "comma-separated functions (directories under functions/)")
	arches := flag.String("arch", "arm64,amd64", "comma-separated GOARCH values (Lambda runs arm64 and amd64, called x86_64 there)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *fns, *arches); err != nil {
		fmt.Fprintln(os.Stderr, "fnbuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, fns, arches string) error {
	root, err := moduleDir(ctx)
	if err != nil {
		return err
	}
	_, err = build(ctx, options{
		ModuleDir: root,
		OutDir:    out,
		Functions: splitList(fns),
		Arches:    splitList(arches),
		Stdout:    os.Stdout,
	})
	return err
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// moduleDir is the root of the main module: the functions are built from
// there whatever the working directory.
func moduleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module: not inside the runfleet module (go env GOMOD is empty); run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// build writes one zip per function and architecture and returns their
// paths, in order.
func build(ctx context.Context, o options) ([]string, error) {
	if len(o.Functions) == 0 || len(o.Arches) == 0 {
		return nil, errors.New("nothing to build: -functions and -arch must name at least one each")
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	tmp, err := os.MkdirTemp("", "fnbuild-")
	if err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	var zips []string
	for _, fn := range o.Functions {
		for _, arch := range o.Arches {
			bin := filepath.Join(tmp, fn+"-"+arch, "bootstrap")
			if err := buildBootstrap(ctx, o.ModuleDir, fn, arch, bin); err != nil {
				return zips, err
			}
			zipPath := filepath.Join(o.OutDir, fn+"-"+arch+".zip")
			sum, err := writeZip(zipPath, bin)
			if err != nil {
				return zips, fmt.Errorf("zip %s for %s: %w", fn, arch, err)
			}
			zips = append(zips, zipPath)
			if o.Stdout != nil {
				fmt.Fprintf(o.Stdout, "%s  sha256:%s\n", zipPath, sum)
			}
		}
	}
	return zips, nil
}

// buildBootstrap builds functions/<fn> for linux/<arch> into out.
// lambda.norpc leaves out the net/rpc shim that only the retired go1.x
// runtime needed; CGO_ENABLED=0 makes the binary static, so it runs on
// al2023 whatever C library the build host has.
func buildBootstrap(ctx context.Context, moduleDir, fn, arch, out string) error {
	if strings.ContainsAny(fn, `/\.`) || fn == "" {
		return fmt.Errorf("build %q: a function is a directory name under functions/", fn)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("build %s for %s: %w", fn, arch, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build",
		"-tags", "lambda.norpc",
		"-trimpath",
		"-ldflags", "-s -w -buildid=",
		"-o", out,
		"./functions/"+fn)
	cmd.Dir = moduleDir
	// Variables that change the output are pinned, or cleared when the
	// caller's environment or go env -w could set them.
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=", "GOEXPERIMENT=", "GOFIPS140=off")
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s for %s: %w\n%s", fn, arch, err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// writeZip writes a zip holding bin as the executable "bootstrap" to
// zipPath (through a temporary file, so a failed build leaves no half zip)
// and returns the zip's SHA-256 in hex.
func writeZip(zipPath, bin string) (string, error) {
	src, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer src.Close()

	h := sha256.New()
	err = atomicfile.Write(zipPath, filepath.Join(filepath.Dir(zipPath), ".fnbuild-*.zip"), func(f *os.File) error {
		zw := zip.NewWriter(io.MultiWriter(f, h))
		zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
			return flate.NewWriter(w, flate.BestCompression)
		})
		hdr := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, Modified: zipTime}
		hdr.SetMode(0o755)
		w, err := zw.CreateHeader(hdr)
		if err == nil {
			_, err = io.Copy(w, src)
		}
		if err == nil {
			err = zw.Close()
		}
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

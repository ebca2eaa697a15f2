// Package project reads, scaffolds and builds runfleet workflow projects: a Go
// main package built with the workflows SDK, described by a
// runfleet.workflow.toml file, whose releases are deterministic artifacts
// (see package artifacts).
//
// # Config file
//
//	# runfleet workflow project
//	workflow = "bench"              # slug ^[a-z0-9][a-z0-9-]{0,99}$
//	main = "."                      # main package, relative to this file; default "."
//	platforms = ["linux/amd64", "linux/arm64"]   # default both; only these two allowed
//	[targets.dev]
//	cluster = "bench-dev"           # `runfleet workflow deploy --target dev` deploys there
//
// Unknown keys are refused, so a misspelt key never silently falls back to a
// default.
package project

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/rftype"
)

// ConfigFile is the name of a workflow project's config file.
const ConfigFile = "runfleet.workflow.toml"

// maxConfigBytes bounds the config file; real ones are a few hundred bytes.
const maxConfigBytes = 1 << 20

var (
	// ErrInvalidConfig is wrapped by every error about the content of a
	// config file, and by Init for invalid arguments.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrNoConfig is wrapped by Find when no config file is found.
	ErrNoConfig = errors.New("no " + ConfigFile)
	// ErrNoTarget is wrapped by Config.Cluster for an unknown target.
	ErrNoTarget = errors.New("unknown deploy target")
)

// Config is a workflow project: the decoded runfleet.workflow.toml.
type Config struct {
	// Workflow is the workflow slug, ^[a-z0-9][a-z0-9-]{0,99}$. Required.
	Workflow string `toml:"workflow"`
	// Main is the directory of the main package, relative to Dir. Default: ".".
	Main string `toml:"main"`
	// Platforms are the platforms releases are built for, in canonical order
	// (artifacts.Platforms). Default: linux/amd64 and linux/arm64.
	Platforms []string `toml:"platforms"`
	// Targets maps a deploy target name to where it deploys. Default: none.
	Targets map[string]Target `toml:"targets"`
	// Dir is the absolute directory of the config file; not read from TOML.
	Dir string `toml:"-"`
}

// Target is a named deploy destination.
type Target struct {
	// Cluster is the slug of the cluster the target deploys to. Required.
	Cluster string `toml:"cluster"`
}

// Path is the config file's path: Dir/runfleet.workflow.toml.
func (c Config) Path() string { return filepath.Join(c.Dir, ConfigFile) }

// MainDir is the absolute directory of the main package.
func (c Config) MainDir() string { return filepath.Join(c.Dir, filepath.FromSlash(c.Main)) }

// Cluster returns the cluster slug target deploys to.
func (c Config) Cluster(target string) (string, error) {
	if t, ok := c.Targets[target]; ok {
		return t.Cluster, nil
	}
	if len(c.Targets) == 0 {
		return "", fmt.Errorf("%w %q: %s defines no targets; add one:\n\n[targets.%s]\ncluster = \"CLUSTER\"",
			ErrNoTarget, target, c.Path(), target)
	}
	return "", fmt.Errorf("%w %q in %s (targets: %s)", ErrNoTarget, target, c.Path(),
		strings.Join(sortedKeys(c.Targets), ", "))
}

// Load reads and validates the config file at path. Defaults are applied
// and Dir is set to the file's absolute directory.
func Load(path string) (Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("load %s: %w", path, err)
	}
	b, err := readFileLimit(abs, maxConfigBytes)
	if err != nil {
		return Config{}, fmt.Errorf("load workflow project config: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", abs, err)
	}
	cfg.Dir = filepath.Dir(abs)
	return cfg, nil
}

// Parse decodes and validates a config file's content and applies defaults.
// Dir is left empty. Errors wrap ErrInvalidConfig and name the field.
func Parse(b []byte) (Config, error) {
	var cfg Config
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&cfg)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, strings.TrimPrefix(err.Error(), "toml: "))
	}
	// The decoder matches keys to fields case-insensitively; insist on the
	// exact names so that every key means exactly one thing.
	for _, k := range md.Keys() {
		if !knownKey(k) {
			return Config{}, fmt.Errorf("%w: unknown key %q (known keys: workflow, main, platforms, targets.NAME.cluster)",
				ErrInvalidConfig, k.String())
		}
	}
	if u := md.Undecoded(); len(u) > 0 {
		return Config{}, fmt.Errorf("%w: unknown key %q", ErrInvalidConfig, u[0].String())
	}
	if !md.IsDefined("main") {
		cfg.Main = "."
	}
	if !md.IsDefined("platforms") {
		cfg.Platforms = slices.Clone(artifacts.Platforms)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	cfg.Main = filepath.ToSlash(filepath.Clean(filepath.FromSlash(cfg.Main)))
	cfg.Platforms = canonicalPlatforms(cfg.Platforms)
	return cfg, nil
}

// knownKey reports whether k is one of the schema's keys, spelt exactly.
func knownKey(k toml.Key) bool {
	switch len(k) {
	case 1:
		return k[0] == "workflow" || k[0] == "main" || k[0] == "platforms" || k[0] == "targets"
	case 2:
		return k[0] == "targets"
	case 3:
		return k[0] == "targets" && k[2] == "cluster"
	}
	return false
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// validate reports the first thing wrong with c, naming the field.
func (c Config) validate() error {
	if c.Workflow == "" {
		return invalid(`workflow is missing: name the workflow, e.g. workflow = "bench"`)
	}
	if err := rftype.ValidateSlug("workflow", c.Workflow); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	m := filepath.FromSlash(c.Main)
	switch {
	case strings.TrimSpace(c.Main) == "":
		return invalid(`main is empty: give the main package's directory relative to %s, e.g. main = "."`, ConfigFile)
	case filepath.IsAbs(m) || strings.HasPrefix(c.Main, "/"):
		return invalid("main %q is absolute: give the main package's directory relative to %s", c.Main, ConfigFile)
	case strings.ContainsAny(c.Main, "\x00\n\r"):
		return invalid("main %q contains a control character", c.Main)
	}
	if len(c.Platforms) == 0 {
		return invalid("platforms is empty: list at least one of %s", strings.Join(quoteAll(artifacts.Platforms), ", "))
	}
	seen := map[string]bool{}
	for i, p := range c.Platforms {
		if !slices.Contains(artifacts.Platforms, p) {
			return invalid("platforms[%d] %q is not supported (supported: %s)", i, p, strings.Join(quoteAll(artifacts.Platforms), ", "))
		}
		if seen[p] {
			return invalid("platforms[%d] %q is listed twice", i, p)
		}
		seen[p] = true
	}
	for _, name := range sortedKeys(c.Targets) {
		if err := rftype.ValidateSlug("target", name); err != nil {
			return fmt.Errorf("%w: targets.%s: %w", ErrInvalidConfig, name, err)
		}
		cl := c.Targets[name].Cluster
		if cl == "" {
			return invalid(`targets.%s.cluster is missing: name the cluster it deploys to, e.g. cluster = "dev"`, name)
		}
		if err := rftype.ValidateSlug("cluster", cl); err != nil {
			return fmt.Errorf("%w: targets.%s.cluster: %w", ErrInvalidConfig, name, err)
		}
	}
	return nil
}

// Find looks for runfleet.workflow.toml in dir, then in its parents, and
// loads the first one found.
func Find(dir string) (Config, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Config{}, fmt.Errorf("find %s: %w", ConfigFile, err)
	}
	for d := abs; ; {
		p := filepath.Join(d, ConfigFile)
		st, err := os.Stat(p)
		switch {
		case err == nil && !st.IsDir():
			return Load(p)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return Config{}, fmt.Errorf("find %s: %w", ConfigFile, err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return Config{}, fmt.Errorf("%w in %s or its parents; run `runfleet workflow init SLUG` to create one", ErrNoConfig, abs)
}

// canonicalPlatforms orders platforms as artifacts.Platforms does.
func canonicalPlatforms(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range artifacts.Platforms {
		if slices.Contains(ps, p) {
			out = append(out, p)
		}
	}
	return out
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readFileLimit reads path, refusing files larger than limit.
func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

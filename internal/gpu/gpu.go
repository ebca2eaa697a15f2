// Package gpu finds a host's GPUs and turns a --gpus spec into the devices a
// runner hands out, one per execution. Detection asks nvidia-smi, the one
// tool every NVIDIA driver installs; hosts without it can still name devices
// by index, which is also how tests without a GPU give a runner devices.
package gpu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runfleet/runfleet/rftype"
)

// Device is a GPU as a runner hands it out.
type Device = rftype.Device

// CommandEnv overrides the nvidia-smi executable (a path), for hosts that
// install it outside PATH.
const CommandEnv = "RUNFLEET_NVIDIA_SMI"

// QueryArgs are the nvidia-smi arguments whose output Parse reads.
var QueryArgs = []string{"--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader"}

// ErrNoNvidiaSMI is returned by Detect when nvidia-smi is not installed.
var ErrNoNvidiaSMI = errors.New("nvidia-smi not found")

// detectTimeout bounds one nvidia-smi call; a wedged driver can hang it.
const detectTimeout = 30 * time.Second

// Detect lists the host's GPUs with nvidia-smi ($RUNFLEET_NVIDIA_SMI, else
// nvidia-smi on PATH). Without nvidia-smi it returns ErrNoNvidiaSMI.
func Detect(ctx context.Context) ([]Device, error) {
	name := os.Getenv(CommandEnv)
	if name == "" {
		name = "nvidia-smi"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%w (looked for %q): %w", ErrNoNvidiaSMI, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, detectTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, QueryArgs...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list GPUs with %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	devs, err := Parse(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("list GPUs with %s: %w", path, err)
	}
	return devs, nil
}

// Parse reads the output of `nvidia-smi --query-gpu=index,uuid,name,memory.total
// --format=csv,noheader`: one device a line, "0, GPU-…, NVIDIA A100-SXM4-80GB,
// 81920 MiB". Blank lines and spaces around fields are ignored; a memory of
// "[N/A]" reads as 0. Devices are returned sorted by index.
func Parse(r io.Reader) ([]Device, error) {
	var devs []Device
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		fields := strings.Split(text, ",")
		if len(fields) != 4 {
			return nil, fmt.Errorf("nvidia-smi output line %d: %q has %d fields, want 4 (index, uuid, name, memory.total)", line, text, len(fields))
		}
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		idx, err := strconv.Atoi(fields[0])
		if err != nil || idx < 0 {
			return nil, fmt.Errorf("nvidia-smi output line %d: index %q is not a device index", line, fields[0])
		}
		mem, err := parseMiB(fields[3])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi output line %d: %w", line, err)
		}
		if slices.ContainsFunc(devs, func(d Device) bool { return d.Index == idx }) {
			return nil, fmt.Errorf("nvidia-smi output line %d: device index %d listed twice", line, idx)
		}
		devs = append(devs, Device{Index: idx, UUID: fields[1], Name: fields[2], MemoryMiB: mem})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read nvidia-smi output: %w", err)
	}
	slices.SortFunc(devs, func(a, b Device) int { return a.Index - b.Index })
	return devs, nil
}

// parseMiB reads "81920 MiB", "81920" (with nounits) or "[N/A]" (0).
func parseMiB(s string) (int, error) {
	if s == "[N/A]" || s == "N/A" || s == "" {
		return 0, nil
	}
	num := strings.TrimSpace(strings.TrimSuffix(s, "MiB"))
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("memory.total %q is not a number of MiB", s)
	}
	return n, nil
}

// Spec is a parsed --gpus value.
type Spec struct {
	All     bool  // "all": every detected device
	Count   int   // "N": the first N detected devices
	Indexes []int // "0,2" or "device=1": those devices
}

// SpecHelp describes the accepted --gpus values, for flag help and errors.
const SpecHelp = `"all", a count N (the first N devices), or device indexes "0,2" (one index: "device=1")`

// ParseSpec parses a --gpus value: "all", a count "N" (≥ 1), a list of
// device indexes "0,2", or "device=I[,J…]" (how to name a single index,
// since a bare number is a count).
func ParseSpec(s string) (Spec, error) {
	v := strings.TrimSpace(s)
	switch {
	case v == "":
		return Spec{}, fmt.Errorf("--gpus is empty: want %s", SpecHelp)
	case v == "all":
		return Spec{All: true}, nil
	case !strings.Contains(v, ",") && !strings.HasPrefix(v, "device="):
		n, err := strconv.Atoi(v)
		if err != nil {
			return Spec{}, fmt.Errorf("--gpus %q: want %s", s, SpecHelp)
		}
		if n < 1 {
			return Spec{}, fmt.Errorf("--gpus %q: a device count must be at least 1 (leave --gpus out to run without devices; name device 0 alone with \"device=0\")", s)
		}
		return Spec{Count: n}, nil
	}
	list := strings.TrimPrefix(v, "device=")
	var idx []int
	for _, part := range strings.Split(list, ",") {
		p := strings.TrimSpace(part)
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Spec{}, fmt.Errorf("--gpus %q: %q is not a device index", s, p)
		}
		if slices.Contains(idx, n) {
			return Spec{}, fmt.Errorf("--gpus %q: device %d is listed twice", s, n)
		}
		idx = append(idx, n)
	}
	return Spec{Indexes: idx}, nil
}

// Select picks the devices spec names from those detected. detected is nil
// when detection was impossible (no nvidia-smi): then only explicit indexes
// are accepted, as given, without UUID, name or memory.
func (sp Spec) Select(detected []Device, canDetect bool) ([]Device, error) {
	if !canDetect {
		if sp.Indexes == nil {
			return nil, fmt.Errorf("--gpus %s needs nvidia-smi to list the devices, and it is not installed; name devices by index instead (--gpus 0,1)", sp)
		}
		out := make([]Device, len(sp.Indexes))
		for i, n := range sp.Indexes {
			out[i] = Device{Index: n}
		}
		return out, nil
	}
	switch {
	case sp.All:
		if len(detected) == 0 {
			return nil, errors.New("--gpus all: nvidia-smi lists no devices on this host")
		}
		return slices.Clone(detected), nil
	case sp.Count > 0:
		if len(detected) < sp.Count {
			return nil, fmt.Errorf("--gpus %d: nvidia-smi found only %d device(s) (%s)", sp.Count, len(detected), indexList(detected))
		}
		return slices.Clone(detected[:sp.Count]), nil
	}
	out := make([]Device, 0, len(sp.Indexes))
	for _, n := range sp.Indexes {
		i := slices.IndexFunc(detected, func(d Device) bool { return d.Index == n })
		if i < 0 {
			return nil, fmt.Errorf("--gpus %s: device %d does not exist; nvidia-smi found %d device(s) (%s)", sp, n, len(detected), indexList(detected))
		}
		out = append(out, detected[i])
	}
	return out, nil
}

// String writes the spec back as a --gpus value.
func (sp Spec) String() string {
	switch {
	case sp.All:
		return "all"
	case sp.Count > 0:
		return strconv.Itoa(sp.Count)
	}
	parts := make([]string, len(sp.Indexes))
	for i, n := range sp.Indexes {
		parts[i] = strconv.Itoa(n)
	}
	if len(parts) == 1 {
		return "device=" + parts[0]
	}
	return strings.Join(parts, ",")
}

// Resolve parses spec and selects its devices on this host, detecting them
// with nvidia-smi where it exists.
func Resolve(ctx context.Context, spec string) ([]Device, error) {
	sp, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	detected, err := Detect(ctx)
	canDetect := err == nil
	if err != nil && !errors.Is(err, ErrNoNvidiaSMI) {
		return nil, err
	}
	return sp.Select(detected, canDetect)
}

// indexList writes the indexes of devs, "none" for none.
func indexList(devs []Device) string {
	if len(devs) == 0 {
		return "none"
	}
	parts := make([]string, len(devs))
	for i, d := range devs {
		parts[i] = strconv.Itoa(d.Index)
	}
	return "indexes " + strings.Join(parts, ",")
}

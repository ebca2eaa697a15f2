package gpu_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/gpu"
)

func parseFile(t *testing.T, name string) []gpu.Device {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	devs, err := gpu.Parse(f)
	require.NoError(t, err)
	return devs
}

// Recorded from an 8×A100 host, with the odd spacing, a trailing tab and a
// blank line real output and copy-pastes carry.
func TestParseRecordedNvidiaSMIOutput(t *testing.T) {
	t.Parallel()
	devs := parseFile(t, "nvidia-smi-8xa100.csv")
	require.Len(t, devs, 8)
	for i, d := range devs {
		require.Equal(t, i, d.Index)
		require.Equal(t, "NVIDIA A100-SXM4-80GB", d.Name)
		require.Equal(t, 81920, d.MemoryMiB)
		require.True(t, strings.HasPrefix(d.UUID, "GPU-"), d.UUID)
	}
	require.Equal(t, "GPU-13579bdf-2468-ace0-1357-9bdf2468ace0", devs[3].UUID, "spaces around a field are trimmed")
}

func TestParseCRLFAndUnknownMemory(t *testing.T) {
	t.Parallel()
	devs := parseFile(t, "nvidia-smi-mixed-crlf.csv")
	require.Equal(t, []gpu.Device{
		{Index: 0, UUID: "GPU-d2a1c3b4-0000-1111-2222-333344445555", Name: "NVIDIA GeForce RTX 4090", MemoryMiB: 24564},
		{Index: 1, UUID: "GPU-e5f6a7b8-6666-7777-8888-9999aaaabbbb", Name: "Tesla T4", MemoryMiB: 0},
	}, devs)
}

func TestParseSortsByIndexAndReadsNoUnits(t *testing.T) {
	t.Parallel()
	devs, err := gpu.Parse(strings.NewReader("1, GPU-b, B, 16384\n0, GPU-a, A, 8192 MiB\n"))
	require.NoError(t, err)
	require.Equal(t, []gpu.Device{{Index: 0, UUID: "GPU-a", Name: "A", MemoryMiB: 8192},
		{Index: 1, UUID: "GPU-b", Name: "B", MemoryMiB: 16384}}, devs)
}

func TestParseRefusesMalformedOutput(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0, GPU-a, A\n":                            `line 1: "0, GPU-a, A" has 3 fields, want 4`,
		"\nx, GPU-a, A, 1 MiB\n":                   `line 2: index "x" is not a device index`,
		"0, GPU-a, A, lots MiB\n":                  `line 1: memory.total "lots MiB" is not a number of MiB`,
		"0, GPU-a, A, 1 MiB\n0, GPU-b, B, 1 MiB\n": "line 2: device index 0 listed twice",
		"No devices were found\n":                  "has 1 fields, want 4",
	} {
		_, err := gpu.Parse(strings.NewReader(in))
		require.ErrorContains(t, err, want, "input %q", in)
	}
}

func TestParseSpec(t *testing.T) {
	t.Parallel()
	good := map[string]gpu.Spec{
		"all":        {All: true},
		"2":          {Count: 2},
		" 4 ":        {Count: 4},
		"0,2":        {Indexes: []int{0, 2}},
		"3, 1":       {Indexes: []int{3, 1}},
		"device=1":   {Indexes: []int{1}},
		"device=0,5": {Indexes: []int{0, 5}},
	}
	for in, want := range good {
		got, err := gpu.ParseSpec(in)
		require.NoError(t, err, "spec %q", in)
		require.Equal(t, want, got, "spec %q", in)
	}
	bad := map[string]string{
		"":          "--gpus is empty",
		"0,x":       `--gpus "0,x": "x" is not a device index`,
		"0,-1":      `"-1" is not a device index`,
		"0,,1":      `"" is not a device index`,
		"1,1":       "device 1 is listed twice",
		"0":         "a device count must be at least 1",
		"-2":        "a device count must be at least 1",
		"many":      `--gpus "many": want "all", a count N`,
		"device=":   `--gpus "device=": "" is not a device index`,
		"device=x":  `"x" is not a device index`,
		"All":       `--gpus "All": want`,
		"0:1":       `--gpus "0:1": want`,
		"device=1;": `"1;" is not a device index`,
	}
	for in, want := range bad {
		_, err := gpu.ParseSpec(in)
		require.ErrorContains(t, err, want, "spec %q", in)
	}
}

func TestSelectAgainstDetectedDevices(t *testing.T) {
	t.Parallel()
	detected := parseFile(t, "nvidia-smi-8xa100.csv")
	sel := func(spec string) ([]gpu.Device, error) {
		sp, err := gpu.ParseSpec(spec)
		require.NoError(t, err)
		return sp.Select(detected, true)
	}
	all, err := sel("all")
	require.NoError(t, err)
	require.Equal(t, detected, all)

	first, err := sel("3")
	require.NoError(t, err)
	require.Equal(t, detected[:3], first)

	picked, err := sel("6,2")
	require.NoError(t, err)
	require.Equal(t, []gpu.Device{detected[6], detected[2]}, picked)

	_, err = sel("9")
	require.EqualError(t, err, "--gpus 9: nvidia-smi found only 8 device(s) (indexes 0,1,2,3,4,5,6,7)")
	_, err = sel("0,8")
	require.EqualError(t, err, "--gpus 0,8: device 8 does not exist; nvidia-smi found 8 device(s) (indexes 0,1,2,3,4,5,6,7)")

	sp, err := gpu.ParseSpec("all")
	require.NoError(t, err)
	_, err = sp.Select(nil, true)
	require.ErrorContains(t, err, "nvidia-smi lists no devices")
}

func TestSelectWithoutNvidiaSMIAcceptsIndexesAsGiven(t *testing.T) {
	t.Parallel()
	sp, err := gpu.ParseSpec("0,2")
	require.NoError(t, err)
	devs, err := sp.Select(nil, false)
	require.NoError(t, err)
	require.Equal(t, []gpu.Device{{Index: 0}, {Index: 2}}, devs)

	for _, spec := range []string{"all", "2"} {
		sp, err := gpu.ParseSpec(spec)
		require.NoError(t, err)
		_, err = sp.Select(nil, false)
		require.ErrorContains(t, err, "needs nvidia-smi to list the devices, and it is not installed; name devices by index instead")
	}
}

// Detect runs the real command named by RUNFLEET_NVIDIA_SMI: here a shell
// script replaying the recorded output, which also checks the arguments.
func TestDetectRunsNvidiaSMI(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "nvidia-smi")
	recorded, err := filepath.Abs(filepath.Join("testdata", "nvidia-smi-8xa100.csv"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
[ "$*" = "`+strings.Join(gpu.QueryArgs, " ")+`" ] || { echo "unexpected arguments: $*" >&2; exit 9; }
cat '`+recorded+`'
`), 0o755))
	t.Setenv(gpu.CommandEnv, script)
	devs, err := gpu.Detect(context.Background())
	require.NoError(t, err)
	require.Len(t, devs, 8)

	devs, err = gpu.Resolve(context.Background(), "2")
	require.NoError(t, err)
	require.Equal(t, []int{0, 1}, []int{devs[0].Index, devs[1].Index})
	_, err = gpu.Resolve(context.Background(), "0,9")
	require.ErrorContains(t, err, "device 9 does not exist")

	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2\nexit 9\n"), 0o755))
	_, err = gpu.Detect(context.Background())
	require.ErrorContains(t, err, "could not communicate with the NVIDIA driver")

	t.Setenv(gpu.CommandEnv, filepath.Join(dir, "missing"))
	_, err = gpu.Detect(context.Background())
	require.ErrorIs(t, err, gpu.ErrNoNvidiaSMI)
	devs, err = gpu.Resolve(context.Background(), "1,3")
	require.NoError(t, err)
	require.Equal(t, []gpu.Device{{Index: 1}, {Index: 3}}, devs)
}

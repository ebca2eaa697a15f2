package artifacts

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestManifestEncodeDecode(t *testing.T) {
	t.Parallel()
	m := testManifest()
	b, err := m.Encode()
	require.NoError(t, err)
	got, err := DecodeManifest(b)
	require.NoError(t, err)
	require.Equal(t, m.Workflow, got.Workflow)
	require.Equal(t, []TaskID{{Name: "Crop", Version: "v0.1"}, {Name: "Resize", Version: "v1.2"}}, got.Tasks, "tasks are sorted")
	require.Equal(t, m.Entrypoints, got.Entrypoints)
	require.Equal(t, m.Build, got.Build)
	b2, err := got.Encode()
	require.NoError(t, err)
	require.Equal(t, b, b2)
	ids, err := got.Identifiers()
	require.NoError(t, err)
	require.Len(t, ids, 2)
}

func TestDecodeManifestErrors(t *testing.T) {
	t.Parallel()
	valid := string(manifestJSON(t))
	tests := []struct {
		name, json, want string
	}{
		{"not json", "nope", "decode manifest.json"},
		{"unknown field", strings.Replace(valid, `"workflow"`, `"extra": 1, "workflow"`, 1), `unknown field "extra"`},
		{"trailing data", valid + "{}", "unexpected data after the JSON object"},
		{"format version", strings.Replace(valid, `"format_version": 1`, `"format_version": 2`, 1), "format_version is 2, want 1"},
		{"bad slug", strings.Replace(valid, `"wf"`, `"Bad_Slug"`, 1), `workflow slug "Bad_Slug"`},
		{"bad version", strings.Replace(valid, `"v1.0"`, `"1.0"`, 1), `version "1.0" of task "T"`},
		{"empty name", strings.Replace(valid, `"name": "T"`, `"name": ""`, 1), "tasks[0]"},
		{"no tasks", `{"format_version":1,"workflow":"wf","tasks":[],"entrypoints":{"linux/amd64":"a"}}`, "tasks is empty"},
		{"duplicate task", `{"format_version":1,"workflow":"wf","tasks":[{"name":"T","version":"v1.0"},{"name":"T","version":"v01.0"}],"entrypoints":{"linux/amd64":"a"}}`, "tasks[1]: duplicate task identifier T@v01.0"},
		{"no entrypoints", `{"format_version":1,"workflow":"wf","tasks":[{"name":"T","version":"v1.0"}]}`, "entrypoints is empty"},
		{"bad platform", strings.Replace(valid, "linux/amd64", "windows/amd64", 1), `unsupported platform "windows/amd64"`},
		{"dotdot entrypoint", strings.Replace(valid, `"bin/app"`, `"../app"`, 1), `path "../app" contains a ".." component`},
		{"absolute entrypoint", strings.Replace(valid, `"bin/app"`, `"/bin/app"`, 1), `path "/bin/app" is absolute`},
		{"manifest entrypoint", strings.Replace(valid, `"bin/app"`, `"manifest.json"`, 1), "cannot be manifest.json"},
		{"too big", valid + strings.Repeat(" ", MaxManifestBytes), "at most 1048576 allowed"},
		{"long build field", strings.Replace(valid, `"format_version"`, `"build":{"go_version":"`+strings.Repeat("x", 2000)+`"},"format_version"`, 1), "build.go_version is 2000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeManifest([]byte(tt.json))
			require.ErrorIs(t, err, ErrInvalidManifest)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(manifestJSON(f))
	b, err := testManifest().Encode()
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`{"format_version":1,"workflow":"wf","tasks":[{"name":"T","version":"v1.0"}],"entrypoints":{"linux/amd64":"a/../b"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidManifest)
			return
		}
		// Whatever decodes re-encodes and decodes to the same manifest.
		enc, err := m.Encode()
		require.NoError(t, err)
		m2, err := DecodeManifest(enc)
		require.NoError(t, err)
		enc2, err := m2.Encode()
		require.NoError(t, err)
		require.True(t, bytes.Equal(enc, enc2))
	})
}

package infra_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/internal/testenv"
)

// moto is a moto_server process with its own in-memory state.
type moto struct{ *testenv.Moto }

func startMoto(t *testing.T) moto { return moto{testenv.NewMoto(t)} }

func (m moto) config() aws.Config { return m.Config() }

// writeZips writes small function zips (a file named bootstrap) to a new
// directory; moto stores code but never runs it.
func writeZips(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"submit-arm64.zip", "sweep-arm64.zip", "submit-amd64.zip", "sweep-amd64.zip"} {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.Create("bootstrap")
		require.NoError(t, err)
		_, err = w.Write([]byte(content + " " + name))
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644))
	}
	return dir
}

// killAfter is an HTTP client that cancels the deploy's context when it
// has sent n requests, as a deploy killed at that point.
type killAfter struct {
	next   aws.HTTPClient
	n      int64
	sent   atomic.Int64
	cancel context.CancelFunc
}

func (k *killAfter) Do(r *http.Request) (*http.Response, error) {
	if k.sent.Add(1) > k.n {
		k.cancel()
		return nil, context.Canceled
	}
	return k.next.Do(r)
}

func stringReader(s string) *bytes.Reader { return bytes.NewReader([]byte(s)) }

func mustJSONString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

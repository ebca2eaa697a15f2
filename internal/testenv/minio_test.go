package testenv

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

func TestMinIO(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := NewMinIO(t)

	resp, err := http.Get(m.Endpoint() + "/minio/health/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	bucket := m.NewBucket(t)
	c := m.Client()
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: strings.NewReader("v")})
	require.NoError(t, err)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("k")})
	require.NoError(t, err)
	b, err := io.ReadAll(out.Body)
	out.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "v", string(b))
	require.ErrorContains(t, m.CreateBucket(ctx, bucket), "create bucket "+bucket)

	m.Stop()
	_, err = http.Get(m.Endpoint() + "/minio/health/ready")
	require.Error(t, err, "stopped")
	require.Contains(t, m.LogTail(), "log "+m.LogPath())
}

func TestMinIOPath(t *testing.T) {
	t.Setenv("RUNFLEET_MINIO_BIN", "/opt/minio/bin/minio")
	p, err := MinIOPath()
	require.NoError(t, err)
	require.Equal(t, "/opt/minio/bin/minio", p)

	t.Setenv("RUNFLEET_MINIO_BIN", "/nonexistent/minio")
	_, err = StartMinIO(context.Background(), t.TempDir())
	require.ErrorContains(t, err, "start minio")
}

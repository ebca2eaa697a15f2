package workflows_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/workflows"
)

func TestInvalidRedisURLErrorHidesThePassword(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://user:s3cret@127.0.0.1:6379/notanumber",
		"redis://user:s3cret@[::1:6379/0",
		"redis://user:s3cret@127.0.0.1:6379/0\x7f",
	} {
		_, err := workflows.NewClient(context.Background(), workflows.WithRedisURL(raw))
		require.Error(t, err, raw)
		require.True(t, errors.Is(err, workflows.ErrInvalidRedisURL), "%q: %v", raw, err)
		require.NotContains(t, err.Error(), "s3cret", raw)
	}
}

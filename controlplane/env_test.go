package controlplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
)

// Not parallel: the tests set environment variables.

func TestConfigFromEnv(t *testing.T) {
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	t.Setenv("RUNFLEET_REDIS_URL", r.URL())
	t.Setenv("RUNFLEET_STORE", "file://"+dir)
	t.Setenv("RUNFLEET_RETENTION", "30d")

	cfg, closeFn, err := controlplane.ConfigFromEnv(context.Background())
	require.NoError(t, err)
	defer closeFn()
	require.Equal(t, 30*24*time.Hour, cfg.Retention)
	require.Equal(t, "file://"+dir, cfg.StoreURL)
	require.IsType(t, &artifacts.FileStore{}, cfg.Store)
	require.NotNil(t, cfg.Logger)
	_, err = cfg.Client.Clusters().List(context.Background())
	require.NoError(t, err, "the client reaches Redis")
	srv, err := controlplane.New(cfg)
	require.NoError(t, err)
	_, err = srv.Sweep(context.Background())
	require.NoError(t, err)

	// Only Redis is required.
	t.Setenv("RUNFLEET_STORE", "")
	t.Setenv("RUNFLEET_RETENTION", "")
	cfg, closeFn2, err := controlplane.ConfigFromEnv(context.Background())
	require.NoError(t, err)
	defer closeFn2()
	require.Nil(t, cfg.Store)
	require.Zero(t, cfg.Retention, "New applies the default")
}

func TestConfigFromEnvNamesTheVariableAtFault(t *testing.T) {
	r := testenv.NewRedis(t)
	for _, tc := range []struct {
		name          string
		redis         string
		store         string
		retention     string
		says, secrets string
	}{
		{"no redis", "", "", "", "RUNFLEET_REDIS_URL is not set", ""},
		{"bad redis URL", "redis://user:hunter2@host:notaport/0", "", "", "RUNFLEET_REDIS_URL", "hunter2"},
		{"redis not answering", "redis://127.0.0.1:1/0", "", "", "RUNFLEET_REDIS_URL", ""},
		{"bad store", r.URL(), "ftp://somewhere", "", "RUNFLEET_STORE", ""},
		{"relative file store", r.URL(), "file://relative/dir", "", "RUNFLEET_STORE", ""},
		{"bad retention", r.URL(), "", "a week", "RUNFLEET_RETENTION", ""},
		{"zero retention", r.URL(), "", "0d", "RUNFLEET_RETENTION", ""},
	} {
		t.Setenv("RUNFLEET_REDIS_URL", tc.redis)
		t.Setenv("RUNFLEET_STORE", tc.store)
		t.Setenv("RUNFLEET_RETENTION", tc.retention)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, closeFn, err := controlplane.ConfigFromEnv(ctx)
		cancel()
		require.ErrorContains(t, err, tc.says, tc.name)
		require.Nil(t, closeFn, tc.name)
		if tc.secrets != "" {
			require.NotContains(t, err.Error(), tc.secrets, "%s: the password must not show", tc.name)
		}
	}
}

func TestParseRetention(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"7d":   7 * 24 * time.Hour,
		"1.5d": 36 * time.Hour,
		"36h":  36 * time.Hour,
		"90m":  90 * time.Minute,
	} {
		got, err := controlplane.ParseRetention(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "7", "-1h", "0s", "7 days", "100000d", "NaNd"} {
		_, err := controlplane.ParseRetention(in)
		require.Error(t, err, in)
	}
}

package cli

import (
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/runfleet/runfleet/artifacts"
)

// storeEnv names the environment variable holding the default store URL.
const storeEnv = "RUNFLEET_STORE"

// storeOptions is the --store flag of the commands that read or write the
// release catalog.
type storeOptions struct {
	url string // --store
}

// register adds --store to fs.
func (s *storeOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.url, "store", "",
		"object store holding releases: file:///abs/dir or s3://bucket/prefix (default $"+storeEnv+", else a file store in ~/.local/share/runfleet/store)")
}

// effectiveStoreURL is the store URL in use: flagURL (--store), else
// $RUNFLEET_STORE, else artifacts.DefaultStoreURL().
func effectiveStoreURL(flagURL string) (string, error) {
	if u := cmp.Or(flagURL, os.Getenv(storeEnv)); u != "" {
		return u, nil
	}
	return artifacts.DefaultStoreURL()
}

// openStore opens the release store named by flagURL (--store), else
// $RUNFLEET_STORE, else the default file store in the user's data directory.
func (a *app) openStore(ctx context.Context, flagURL string) (artifacts.Store, error) {
	st, _, err := openStoreURL(ctx, flagURL)
	return st, err
}

// openStoreURL is openStore that also returns the store URL for messages,
// credentials redacted.
func openStoreURL(_ context.Context, flagURL string) (artifacts.Store, string, error) {
	raw, err := effectiveStoreURL(flagURL)
	if err != nil {
		return nil, "", err
	}
	st, err := artifacts.OpenStore(raw)
	if err != nil {
		return nil, "", &hintError{err: err,
			hint: "name the release store with --store URL or $" + storeEnv + " (file:///abs/dir or s3://bucket/prefix)"}
	}
	return st, redactURL(raw), nil
}

// catalog opens the store and returns the release catalog over it and the
// store URL for messages (credentials redacted).
func (s *storeOptions) catalog(ctx context.Context) (*artifacts.Catalog, string, error) {
	st, shown, err := openStoreURL(ctx, s.url)
	if err != nil {
		return nil, "", err
	}
	return &artifacts.Catalog{Store: st}, shown, nil
}

// byteSize formats n bytes for people: 512 B, 1.5 KiB, 12.3 MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// shortID is the first 12 digits of a release id, as listings show it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/internal/atomicfile"
	"github.com/runfleet/runfleet/workflows"
)

// jobCacheCmd is `runfleet job cache ID ls|get KEY`: a look into a job's
// cache (workflows.JobCache) from outside its tasks.
func (a *app) jobCacheCmd() *cobra.Command {
	var (
		cacheURL string
		asJSON   bool
		out      string
	)
	cmd := &cobra.Command{
		Use:   "cache ID ls [--json] | cache ID get KEY [--out FILE]",
		Short: "List or read a job's cache",
		Long: `List the keys of a job's cache (workflows.JobCache) or read one value.

  ls         the keys, sorted, one per line (a group's keys show as
             "<group>/<key>"); --json prints one JSON array of strings
  get KEY    the value of KEY on standard output, or in FILE with --out
             (written whole or not at all); a key with no value is an error

The cache is where the job's runners keep it: --cache URL, else
$RUNFLEET_CACHE, else "redis" (the Redis runfleet uses). Give the setting
the runners were started with, for example
--cache 's3://bucket/prefix?endpoint=http://127.0.0.1:9000'. A job's cache
is deleted when the job is archived. Reads Redis even with --api.`,
		Example: `  runfleet job cache 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d ls
  runfleet job cache 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d ls --json | jq length
  runfleet job cache 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d get stats/tile-7
  runfleet job cache 0196a3c4-8f2e-7c1a-9b1e-5d6f7a8b9c0d get model.bin --out model.bin --cache s3://ml/cache`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 2 && args[1] == "ls":
			case len(args) == 3 && args[1] == "get":
			case len(args) < 2:
				return usageErrorf("give a job id, then ls or get KEY, e.g. runfleet job cache ID ls")
			case args[1] == "ls":
				return usageErrorf("ls takes no arguments after it, got %q", args[2:])
			case args[1] == "get":
				return usageErrorf("get takes exactly one KEY, got %d", len(args)-2)
			default:
				return usageErrorf("unknown job cache operation %q; use ls or get KEY", args[1])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[1] == "ls" && out != "" {
				return usageErrorf("--out goes with get")
			}
			if args[1] == "get" && asJSON {
				return usageErrorf("--json goes with ls")
			}
			ctx := cmd.Context()
			run := func(jc *workflows.Cache) error {
				if args[1] == "ls" {
					return a.cacheList(ctx, jc, asJSON)
				}
				return a.cacheGet(ctx, jc, args[2], out)
			}
			if cacheURL == "" {
				return a.withClient(ctx, func(c *workflows.Client) error { return run(c.Jobs().Cache(args[0])) })
			}
			c, err := workflows.NewClient(ctx, workflows.WithLogger(a.logger), workflows.WithRedisURL(a.effectiveRedisURL()),
				workflows.WithJobCache(cacheURL))
			if err != nil {
				return err
			}
			defer c.Close()
			return run(c.Jobs().Cache(args[0]))
		},
	}
	cmd.Flags().StringVar(&cacheURL, "cache", "", `where the job's cache lives: "redis" or an object store URL (default $RUNFLEET_CACHE, else redis)`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "ls: print the keys as one JSON array")
	cmd.Flags().StringVar(&out, "out", "", "get: write the value to this file instead of standard output")
	return cmd
}

func (a *app) cacheList(ctx context.Context, jc *workflows.Cache, asJSON bool) error {
	keys := []string{}
	for k, err := range jc.Keys(ctx) {
		if err != nil {
			return err
		}
		if asJSON {
			keys = append(keys, k)
		} else if _, err := fmt.Fprintln(a.out, k); err != nil {
			return err
		}
	}
	if asJSON {
		return writeJSON(a.out, keys)
	}
	return nil
}

func (a *app) cacheGet(ctx context.Context, jc *workflows.Cache, key, out string) error {
	r, err := jc.Reader(ctx, key)
	if err != nil {
		return err
	}
	defer r.Close()
	if out == "" {
		_, err = io.Copy(a.out, r)
		return err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	return atomicfile.Write(abs, abs+".tmp-*", func(f *os.File) error {
		_, err := io.Copy(f, r)
		return err
	})
}

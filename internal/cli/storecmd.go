package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
)

func (a *app) storeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Prepare the object store releases are published to",
		Example: `  runfleet store init --store s3://releases/team
  runfleet store init`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.storeInitCmd())
	return cmd
}

func (a *app) storeInitCmd() *cobra.Command {
	so := &storeOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the store if it does not exist (an S3 bucket, or a directory)",
		Long: `Creates the release store named by --store, $RUNFLEET_STORE or the default
file store: the bucket of an s3:// URL, or the directory of a file:// URL.
A store that exists already is left as it is.

s3:// stores take their endpoint and credentials from the standard AWS
variables (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION).`,
		Example: `  runfleet store init --store file:///var/lib/runfleet/store
  AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000 runfleet store init --store s3://releases`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.storeInit(cmd.Context(), so)
		},
	}
	so.register(cmd.Flags())
	return cmd
}

func (a *app) storeInit(ctx context.Context, so *storeOptions) error {
	st, shown, err := openStoreURL(ctx, so.url)
	if err != nil {
		return err
	}
	switch s := st.(type) {
	case *artifacts.S3Store:
		created, err := s.CreateBucket(ctx)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(a.out, "created store %s\n", shown)
			return nil
		}
	}
	// A file store's directory is created when it is opened.
	fmt.Fprintf(a.out, "store %s is ready\n", shown)
	return nil
}

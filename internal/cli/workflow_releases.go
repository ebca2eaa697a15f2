package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
)

func (a *app) workflowReleasesCmd(so *storeOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "releases SLUG",
		Short: "List the releases of a workflow, newest first",
		Example: `  runfleet workflow releases tiles
  runfleet workflow releases tiles --json | jq -r '.[0].id'`,
		Args: exactArgs("SLUG"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, storeURL, err := so.catalog(cmd.Context())
			if err != nil {
				return err
			}
			rels, err := cat.Releases(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				if rels == nil {
					rels = []artifacts.Release{}
				}
				return writeJSON(a.out, rels)
			}
			if len(rels) == 0 {
				fmt.Fprintf(a.err, "workflow %s has no releases in %s\n", args[0], storeURL)
				return nil
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "RELEASE\tPUBLISHED\tSIZE\tSIGNED\tTASKS")
			for _, r := range rels {
				signed := "no"
				if r.Signed() {
					signed = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", shortID(r.ID), timestamp(r.PublishedAt), byteSize(r.Size), signed,
					firstLine(taskList(r.Manifest.Tasks), 80))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the release records as a JSON array")
	so.register(cmd.Flags())
	return cmd
}

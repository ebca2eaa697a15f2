package cli

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/internal/project"
	"github.com/runfleet/runfleet/rftype"
)

func (a *app) workflowPublishCmd(so *storeOptions) *cobra.Command {
	var (
		workflow, signKey string
		asJSON            bool
	)
	cmd := &cobra.Command{
		Use:   "publish [ARTIFACT]",
		Short: "Verify a release artifact and publish it to the store",
		Long: `Verify a release artifact (digest, archive safety, manifest) and publish it
to the store as a release of the workflow its manifest names, then make it
the workflow's latest release. ARTIFACT defaults to dist/<workflow>.tar.zst of
the project in the current directory (see runfleet.workflow.toml).

The release id (the artifact's SHA-256) is printed on stdout, alone on one
line. Publishing the same artifact again uploads nothing, says "already
published" and makes it the latest release again; with a signing key it adds
the signature.

The release is signed with the ed25519 key in --sign-key FILE, else in
$` + signingKeyEnv + ` (base64); without either it is published unsigned.`,
		Example: `  runfleet workflow publish
  runfleet workflow publish dist/tiles.tar.zst --sign-key release.key
  RUNFLEET_SIGNING_KEY="$(cat release.key)" runfleet workflow publish build/tiles.tar.zst --store s3://releases/prod --json`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if workflow != "" {
				if err := rftype.ValidateSlug("workflow", workflow); err != nil {
					return usageErrorf("--workflow: %v", err)
				}
			}
			path := ""
			if len(args) == 1 {
				path = args[0]
			} else {
				cfg, found, err := findProject()
				if err != nil {
					return err
				}
				switch {
				case found:
					path = filepath.Join(cfg.Dir, "dist", cmp.Or(workflow, cfg.Workflow)+".tar.zst")
				case workflow != "":
					path = filepath.Join("dist", workflow+".tar.zst")
				default:
					return usageErrorf("missing ARTIFACT: no %s in this directory or its parents to find dist/<workflow>.tar.zst", project.ConfigFile)
				}
				if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
					return &hintError{err: fmt.Errorf("no artifact at %s", path), hint: "build it first with: runfleet workflow build"}
				}
			}
			key, err := a.readSigningKey(signKey)
			if err != nil {
				return err
			}
			cat, storeURL, err := so.catalog(cmd.Context())
			if err != nil {
				return err
			}
			if workflow != "" {
				ins, err := artifacts.InspectArtifact(cmd.Context(), path, "", cat.Limits)
				if err != nil {
					return err
				}
				if ins.Manifest.Workflow != workflow {
					return fmt.Errorf("artifact %s is a release of workflow %q, not %q", path, ins.Manifest.Workflow, workflow)
				}
			}
			rel, isNew, err := cat.Publish(cmd.Context(), path, key)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.out, struct {
					artifacts.Release
					Published bool   `json:"published"`
					Store     string `json:"store"`
				}{rel, isNew, storeURL})
			}
			fmt.Fprintln(a.out, rel.ID)
			signed := "unsigned"
			if rel.Signed() {
				signed = "signed"
			}
			if isNew {
				fmt.Fprintf(a.err, "published workflow %s release %s (%s, %s) to %s\n", rel.Workflow, rel.ID, byteSize(rel.Size), signed, storeURL)
			} else {
				fmt.Fprintf(a.err, "workflow %s release %s is already published (%s); it is the latest release again\n", rel.Workflow, rel.ID, signed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&workflow, "workflow", "", "workflow slug the artifact must belong to (default: the project's)")
	f.StringVar(&signKey, "sign-key", "", "file holding the base64 ed25519 private key to sign with (default $"+signingKeyEnv+")")
	f.BoolVar(&asJSON, "json", false, "print the release record as JSON, with published (false when it already was) and store")
	so.register(cmd.Flags())
	return cmd
}

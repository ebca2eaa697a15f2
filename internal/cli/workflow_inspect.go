package cli

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/internal/jobgraph"
)

// releaseFileRE matches a file named by its release id, as stores and
// caches name artifacts.
var releaseFileRE = regexp.MustCompile(`^([0-9a-f]{64})\.tar\.zst$`)

func (a *app) workflowInspectCmd() *cobra.Command {
	var (
		wantID, sigText, sigFile string
		trusted                  []string
		asJSON                   bool
	)
	cmd := &cobra.Command{
		Use:   "inspect ARTIFACT",
		Short: "Verify a release artifact and show its manifest, without running anything",
		Long: `Verify a release artifact exactly as a release runner would, without running
anything: its digest against the expected release id (--id, else the file name
when it is <id>.tar.zst), the archive's safety (no links, devices, absolute or
".." paths, decompression bombs), the manifest, and with --trusted-key the
signature. Then print the release id and the manifest.

Exits 1 naming the problem when any check fails.`,
		Example: `  runfleet workflow inspect dist/tiles.tar.zst
  runfleet workflow inspect "downloads/$RELEASE_ID.tar.zst" --sig-file tiles.sig --trusted-key release.pub
  runfleet workflow inspect dist/tiles.tar.zst --id "$RELEASE_ID" --signature "$SIG" --trusted-key "$PUBKEY" --json`,
		Args: exactArgs("ARTIFACT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if sigText != "" && sigFile != "" {
				return usageErrorf("--signature and --sig-file are mutually exclusive; give the signature one way")
			}
			digestSource := "--id"
			if wantID == "" {
				if m := releaseFileRE.FindStringSubmatch(filepath.Base(path)); m != nil {
					wantID, digestSource = m[1], "the file name"
				}
			} else if err := artifacts.ValidateID(wantID); err != nil {
				return usageErrorf("--id: %v", err)
			}
			var keys []ed25519.PublicKey
			for _, k := range trusted {
				key, err := readPublicKey(k)
				if err != nil {
					return err
				}
				keys = append(keys, key)
			}
			var sig []byte
			if sigFile != "" {
				b, err := os.ReadFile(sigFile)
				if err != nil {
					return fmt.Errorf("read signature: %w", err)
				}
				sigText = string(b)
			}
			if sigText != "" {
				var err error
				if sig, err = artifacts.ParseSignature(sigText); err != nil {
					return err
				}
			}

			ins, err := artifacts.InspectArtifact(cmd.Context(), path, wantID, artifacts.Limits{})
			if err != nil {
				return err
			}
			signature := "none"
			switch {
			case len(keys) > 0:
				if err := artifacts.Verify(keys, ins.ID, sig); err != nil {
					return err
				}
				signature = "valid"
			case sig != nil:
				signature = "not verified"
			}
			digest := "not compared: no expected release id (give --id, or name the file <id>.tar.zst)"
			if wantID != "" {
				digest = "ok, matches " + digestSource
			}
			if asJSON {
				return writeJSON(a.out, struct {
					artifacts.Inspection
					DigestChecked bool   `json:"digest_checked"`
					Signature     string `json:"signature"`
				}{ins, wantID != "", signature})
			}
			m := ins.Manifest
			tw := newTable(a.out)
			fmt.Fprintf(tw, "Release:\t%s\n", ins.ID)
			fmt.Fprintf(tw, "Workflow:\t%s\n", m.Workflow)
			fmt.Fprintf(tw, "Size:\t%s (%s bytes)\n", byteSize(ins.Size), jobgraph.Commas(ins.Size))
			fmt.Fprintf(tw, "Digest:\t%s\n", digest)
			fmt.Fprintf(tw, "Archive:\tok, safe to unpack\n")
			switch signature {
			case "valid":
				fmt.Fprintf(tw, "Signature:\tvalid, by one of %d trusted key(s)\n", len(keys))
			case "not verified":
				fmt.Fprintf(tw, "Signature:\tpresent, not verified (give --trusted-key)\n")
			default:
				fmt.Fprintf(tw, "Signature:\tnone given\n")
			}
			fmt.Fprintf(tw, "Format:\tversion %d\n", m.FormatVersion)
			fmt.Fprintf(tw, "Tasks:\t%s\n", taskList(m.Tasks))
			platforms := make([]string, 0, len(m.Entrypoints))
			for p := range m.Entrypoints {
				platforms = append(platforms, p)
			}
			slices.Sort(platforms)
			for i, p := range platforms {
				label := ""
				if i == 0 {
					label = "Entrypoints:"
				}
				fmt.Fprintf(tw, "%s\t%s: %s\n", label, p, m.Entrypoints[p])
			}
			for _, b := range []struct{ label, v string }{
				{"Go version:", m.Build.GoVersion}, {"Source:", m.Build.SourceRevision}, {"SDK version:", m.Build.SDKVersion},
			} {
				if b.v != "" {
					fmt.Fprintf(tw, "%s\t%s\n", b.label, b.v)
				}
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&wantID, "id", "", "expected release id (default: from a file named <id>.tar.zst)")
	f.StringVar(&sigText, "signature", "", "the release's signature, base64")
	f.StringVar(&sigFile, "sig-file", "", "file holding the release's signature, base64")
	f.StringArrayVar(&trusted, "trusted-key", nil, "trusted public key, base64 or a .pub file; repeatable. With keys, a valid signature is required")
	f.BoolVar(&asJSON, "json", false, "print the release id, size, manifest and check results as JSON")
	return cmd
}

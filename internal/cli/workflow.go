package cli

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
	"github.com/runfleet/runfleet/internal/project"
	"github.com/runfleet/runfleet/workflows"
)

// signingKeyEnv holds a base64 ed25519 private key for workflow publish.
const signingKeyEnv = "RUNFLEET_SIGNING_KEY"

func (a *app) workflowCmd() *cobra.Command {
	so := &storeOptions{}
	cmd := &cobra.Command{
		Use:   "workflow",
		Short: "Publish, inspect, deploy and undeploy workflow releases",
		Long: `A workflow is a Go program built with the workflows SDK. Each build is packed
into a release: a deterministic .tar.zst artifact whose id is its SHA-256.
Releases are published to an object store (--store) and deployed to clusters,
one active release per workflow per cluster; the cluster's release runners
start it within moments.

Commands that need the workflow read it from --workflow, else from the
runfleet.workflow.toml of the current directory or its parents.`,
		Example: `  runfleet workflow publish dist/tiles.tar.zst --sign-key release.key
  runfleet workflow deploy --cluster dev --latest
  runfleet workflow releases tiles
  runfleet --redis redis://10.0.0.5:6379/0 workflow list --store s3://releases/prod`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.workflowInitCmd(), a.workflowBuildCmd(), a.workflowPublishCmd(so), a.workflowKeygenCmd(), a.workflowDeployCmd(so),
		a.workflowUndeployCmd(), a.workflowListCmd(so), a.workflowReleasesCmd(so), a.workflowInspectCmd())
	return cmd
}

// maxArgs allows at most n positional arguments.
func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("unexpected argument %q", args[n])
		}
		return nil
	}
}

// findProject loads the runfleet.workflow.toml of the current directory or
// a parent. found is false when there is none.
func findProject() (cfg project.Config, found bool, err error) {
	cfg, err = project.Find(".")
	if errors.Is(err, project.ErrNoConfig) {
		return project.Config{}, false, nil
	}
	if err != nil {
		return project.Config{}, false, err
	}
	return cfg, true, nil
}

// resolveWorkflow is the --workflow flag, else the project's workflow.
func resolveWorkflow(flag string) (string, error) {
	if flag != "" {
		if !project.ValidSlug(flag) {
			return "", usageErrorf("invalid --workflow %q: use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit", flag)
		}
		return flag, nil
	}
	cfg, found, err := findProject()
	if err != nil {
		return "", err
	}
	if !found {
		return "", usageErrorf("missing --workflow: no %s in this directory or its parents names one", project.ConfigFile)
	}
	return cfg.Workflow, nil
}

// resolveCluster is --cluster, else the cluster of --target in the project.
func resolveCluster(cluster, target string) (string, error) {
	switch {
	case cluster != "" && target != "":
		return "", usageErrorf("--cluster and --target are mutually exclusive; name the cluster one way")
	case cluster != "":
		return cluster, nil
	case target == "":
		return "", usageErrorf("missing --cluster (or --target, a deploy target of %s)", project.ConfigFile)
	}
	cfg, found, err := findProject()
	if err != nil {
		return "", err
	}
	if !found {
		return "", usageErrorf("--target %s needs a %s in this directory or its parents; give --cluster instead", target, project.ConfigFile)
	}
	return cfg.Cluster(target)
}

// readSigningKey reads a base64 ed25519 private key from path, else from
// $RUNFLEET_SIGNING_KEY; nil when neither is set.
func (a *app) readSigningKey(path string) (ed25519.PrivateKey, error) {
	text := ""
	switch {
	case path != "":
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read signing key: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(a.err, "warning: signing key %s is readable by others (mode %04o); chmod 600 it\n", path, st.Mode().Perm())
		}
		b, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return nil, fmt.Errorf("read signing key %s: %w", path, err)
		}
		text = string(b)
	case os.Getenv(signingKeyEnv) != "":
		text, path = os.Getenv(signingKeyEnv), "$"+signingKeyEnv
	default:
		return nil, nil
	}
	key, err := artifacts.ParsePrivateKey(text)
	if err != nil {
		return nil, &hintError{err: fmt.Errorf("signing key %s: %w", path, err),
			hint: "create a key pair with: runfleet workflow keygen --out release"}
	}
	return key, nil
}

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
			if workflow != "" && !project.ValidSlug(workflow) {
				return usageErrorf("invalid --workflow %q: use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit", workflow)
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

func (a *app) workflowKeygenCmd() *cobra.Command {
	var (
		out           string
		force, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Create an ed25519 key pair for signing releases",
		Long: `Create an ed25519 key pair for signing releases: PREFIX.key holds the private
key (base64, mode 0600: keep it secret, e.g. in a CI secret) and PREFIX.pub the
public key (base64), which release runners trust. Existing files are not
replaced unless --force is given.`,
		Example: `  runfleet workflow keygen --out release
  runfleet workflow publish --sign-key release.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf("missing required flag --out")
			}
			pub, priv, err := artifacts.GenerateKey()
			if err != nil {
				return err
			}
			keyPath, pubPath := out+".key", out+".pub"
			if !force {
				for _, p := range []string{keyPath, pubPath} {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s already exists; pick another --out or add --force to replace it", p)
					}
				}
			}
			if err := writeKeyFile(keyPath, artifacts.EncodePrivateKey(priv)+"\n", 0o600, force); err != nil {
				return err
			}
			if err := writeKeyFile(pubPath, artifacts.EncodePublicKey(pub)+"\n", 0o644, force); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.out, map[string]string{"private_key_file": keyPath, "public_key_file": pubPath,
					"public_key": artifacts.EncodePublicKey(pub)})
			}
			fmt.Fprintf(a.out, "wrote %s (private key: keep it secret) and %s\npublic key: %s\n", keyPath, pubPath, artifacts.EncodePublicKey(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "path prefix of the key files: writes PREFIX.key and PREFIX.pub (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing key files")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the file names and public key as JSON")
	return cmd
}

// writeKeyFile writes text to path with perm; without force it refuses an
// existing file.
func writeKeyFile(path, text string, perm os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Chmod(perm) // an existing file keeps its mode otherwise
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

func (a *app) workflowListCmd(so *storeOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the workflows in the store, their latest release and where they are deployed",
		Long: `List the workflows with releases in the store: the latest release, when it was
published, how many releases there are and, when Redis is reachable, the
clusters each workflow is deployed to (with the release, when it is not the
latest).`,
		Example: `  runfleet workflow list
  runfleet workflow list --store s3://releases/prod --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cat, storeURL, err := so.catalog(cmd.Context())
			if err != nil {
				return err
			}
			wfs, err := cat.Workflows(ctx)
			if err != nil {
				return err
			}
			type deployedTo struct {
				Cluster string `json:"cluster"`
				Release string `json:"release"`
			}
			type row struct {
				Workflow    string       `json:"workflow"`
				Latest      string       `json:"latest"`
				PublishedAt time.Time    `json:"published_at"`
				Releases    int          `json:"releases"`
				Deployments []deployedTo `json:"deployments"` // null when Redis was not reachable
			}
			rows := make([]row, 0, len(wfs))
			for _, wf := range wfs {
				rels, err := cat.Releases(ctx, wf)
				if err != nil {
					return err
				}
				r := row{Workflow: wf, Releases: len(rels)}
				latest, err := cat.Latest(ctx, wf)
				switch {
				case err == nil:
					r.Latest, r.PublishedAt = latest.ID, latest.PublishedAt
				case errors.Is(err, artifacts.ErrReleaseNotFound) && len(rels) > 0:
					r.Latest, r.PublishedAt = rels[0].ID, rels[0].PublishedAt
				case !errors.Is(err, artifacts.ErrReleaseNotFound):
					return err
				}
				rows = append(rows, r)
			}
			deployed, derr := a.deploymentsByWorkflow(ctx)
			if derr == nil {
				for i := range rows {
					rows[i].Deployments = []deployedTo{}
					for _, d := range deployed[rows[i].Workflow] {
						rows[i].Deployments = append(rows[i].Deployments, deployedTo{d.cluster, d.release})
					}
				}
			} else {
				fmt.Fprintf(a.err, "runfleet: deployments not shown: %v\n", derr)
			}
			if asJSON {
				return writeJSON(a.out, rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(a.err, "no workflow releases in %s yet; publish one with: runfleet workflow publish ARTIFACT\n", storeURL)
				return nil
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "WORKFLOW\tLATEST\tPUBLISHED\tRELEASES\tDEPLOYED")
			for _, r := range rows {
				where := "?"
				if r.Deployments != nil {
					parts := make([]string, 0, len(r.Deployments))
					for _, d := range r.Deployments {
						if d.Release == r.Latest {
							parts = append(parts, d.Cluster)
						} else {
							parts = append(parts, d.Cluster+" ("+shortID(d.Release)+")")
						}
					}
					where = strings.Join(parts, ", ")
					if where == "" {
						where = "-"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Workflow, shortID(r.Latest), timestamp(r.PublishedAt), r.Releases, where)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the workflows as a JSON array")
	so.register(cmd.Flags())
	return cmd
}

type clusterRelease struct{ cluster, release string }

// deploymentsByWorkflow reads every cluster's deployments, giving Redis a
// couple of seconds to answer.
func (a *app) deploymentsByWorkflow(ctx context.Context) (map[string][]clusterRelease, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := map[string][]clusterRelease{}
	err := a.withClient(ctx, func(c *workflows.Client) error {
		cls, err := c.Clusters().List(ctx)
		if err != nil {
			return err
		}
		for _, cl := range cls {
			_, deps, err := c.Deployments().List(ctx, cl.Slug)
			if err != nil {
				return err
			}
			for _, d := range deps {
				out[d.Workflow] = append(out[d.Workflow], clusterRelease{cl.Slug, d.Release})
			}
		}
		return nil
	})
	return out, err
}

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

// taskList is "Crop@v0.1, Resize@v1.2".
func taskList[T fmt.Stringer](ts []T) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

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
			fmt.Fprintf(tw, "Size:\t%s (%s bytes)\n", byteSize(ins.Size), commas(ins.Size))
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

// readPublicKey parses a base64 public key, or reads one from a file.
func readPublicKey(s string) (ed25519.PublicKey, error) {
	if key, err := artifacts.ParsePublicKey(s); err == nil {
		return key, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("--trusted-key %q is neither a base64 public key nor a readable file: %w", s, err)
	}
	key, err := artifacts.ParsePublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("trusted key file %s: %w", s, err)
	}
	return key, nil
}

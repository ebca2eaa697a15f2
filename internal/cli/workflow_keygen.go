package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/artifacts"
)

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

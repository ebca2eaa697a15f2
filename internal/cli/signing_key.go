package cli

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"

	"github.com/runfleet/runfleet/artifacts"
)

// signingKeyEnv holds a base64 ed25519 private key for workflow publish.
const signingKeyEnv = "RUNFLEET_SIGNING_KEY"

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

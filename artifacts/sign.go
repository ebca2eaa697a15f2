package artifacts

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrUnsigned is returned by Verify when trusted keys are configured and the
// release has no signature.
var ErrUnsigned = errors.New("release is not signed")

// ErrBadSignature is returned by Verify when no trusted key verifies the
// signature.
var ErrBadSignature = errors.New("release signature is not valid")

// GenerateKey returns a new ed25519 key pair for signing releases.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// Sign returns the detached ed25519 signature of release id: a signature over
// the 32 digest bytes the hex id encodes.
func Sign(priv ed25519.PrivateKey, id string) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign release: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	digest, err := idBytes(id)
	if err != nil {
		return nil, fmt.Errorf("sign release: %w", err)
	}
	return ed25519.Sign(priv, digest), nil
}

// Verify checks the signature sig of release id against trustedKeys. With no
// trusted keys, signatures are not required and Verify returns nil. With
// trusted keys, an empty sig is refused with ErrUnsigned and a signature no
// trusted key verifies with ErrBadSignature.
func Verify(trustedKeys []ed25519.PublicKey, id string, sig []byte) error {
	digest, err := idBytes(id)
	if err != nil {
		return fmt.Errorf("verify release: %w", err)
	}
	if len(trustedKeys) == 0 {
		return nil
	}
	if len(sig) == 0 {
		return fmt.Errorf("%w: release %s has no signature and %d trusted key(s) are configured; sign it when publishing", ErrUnsigned, id, len(trustedKeys))
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: release %s: signature is %d bytes, want %d", ErrBadSignature, id, len(sig), ed25519.SignatureSize)
	}
	for _, k := range trustedKeys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, digest, sig) {
			return nil
		}
	}
	return fmt.Errorf("%w: release %s: no trusted key (of %d) verifies it", ErrBadSignature, id, len(trustedKeys))
}

func idBytes(id string) ([]byte, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	return hex.DecodeString(id)
}

// EncodePublicKey returns the base64 text form of a public key.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey decodes a public key from its base64 text form (surrounding
// white space ignored).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("parse ed25519 public key: not base64: %w", err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("parse ed25519 public key: %d bytes, want %d", len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// EncodePrivateKey returns the base64 text form of a private key: its seed.
func EncodePrivateKey(priv ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(priv.Seed())
}

// ParsePrivateKey decodes a private key from its base64 text form: a 32-byte
// seed (as EncodePrivateKey writes) or a 64-byte private key.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("parse ed25519 private key: not base64")
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if string(priv[ed25519.SeedSize:]) != string(b[ed25519.SeedSize:]) {
			return nil, errors.New("parse ed25519 private key: public half does not match the seed")
		}
		return priv, nil
	default:
		return nil, fmt.Errorf("parse ed25519 private key: %d bytes, want a %d-byte seed", len(b), ed25519.SeedSize)
	}
}

// EncodeSignature returns the base64 text form of a signature.
func EncodeSignature(sig []byte) string {
	return base64.StdEncoding.EncodeToString(sig)
}

// ParseSignature decodes a signature from its base64 text form.
func ParseSignature(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("parse signature: not base64: %w", err)
	}
	if len(b) != ed25519.SignatureSize {
		return nil, fmt.Errorf("parse signature: %d bytes, want %d", len(b), ed25519.SignatureSize)
	}
	return b, nil
}

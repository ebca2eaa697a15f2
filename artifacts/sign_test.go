package artifacts

import (
	"crypto/ed25519"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSignatures(t *testing.T) {
	t.Parallel()
	_, id := packBytes(t, testManifest(), testFiles())
	pub, priv, err := GenerateKey()
	require.NoError(t, err)
	otherPub, otherPriv, err := GenerateKey()
	require.NoError(t, err)
	sig, err := Sign(priv, id)
	require.NoError(t, err)

	t.Run("good", func(t *testing.T) {
		require.NoError(t, Verify([]ed25519.PublicKey{pub}, id, sig))
		require.NoError(t, Verify([]ed25519.PublicKey{otherPub, pub}, id, sig), "any trusted key will do")
	})
	t.Run("wrong key", func(t *testing.T) {
		bad, err := Sign(otherPriv, id)
		require.NoError(t, err)
		err = Verify([]ed25519.PublicKey{pub}, id, bad)
		require.ErrorIs(t, err, ErrBadSignature)
		require.ErrorContains(t, err, "no trusted key (of 1) verifies it")
	})
	t.Run("tampered id", func(t *testing.T) {
		other := []byte(id)
		if other[0] == '0' {
			other[0] = '1'
		} else {
			other[0] = '0'
		}
		require.ErrorIs(t, Verify([]ed25519.PublicKey{pub}, string(other), sig), ErrBadSignature)
	})
	t.Run("tampered signature", func(t *testing.T) {
		bad := append([]byte(nil), sig...)
		bad[10] ^= 1
		require.ErrorIs(t, Verify([]ed25519.PublicKey{pub}, id, bad), ErrBadSignature)
		require.ErrorIs(t, Verify([]ed25519.PublicKey{pub}, id, bad[:20]), ErrBadSignature)
	})
	t.Run("unsigned with trusted keys", func(t *testing.T) {
		err := Verify([]ed25519.PublicKey{pub}, id, nil)
		require.ErrorIs(t, err, ErrUnsigned)
		require.ErrorContains(t, err, "has no signature and 1 trusted key(s) are configured")
	})
	t.Run("no trusted keys", func(t *testing.T) {
		require.NoError(t, Verify(nil, id, nil))
		require.NoError(t, Verify(nil, id, sig))
	})
	t.Run("bad id", func(t *testing.T) {
		require.ErrorIs(t, Verify([]ed25519.PublicKey{pub}, "XYZ", sig), ErrInvalidID)
		_, err := Sign(priv, "nothex")
		require.ErrorIs(t, err, ErrInvalidID)
	})
	t.Run("text encoding", func(t *testing.T) {
		pub2, err := ParsePublicKey(EncodePublicKey(pub) + "\n")
		require.NoError(t, err)
		require.Equal(t, pub, pub2)
		priv2, err := ParsePrivateKey(EncodePrivateKey(priv))
		require.NoError(t, err)
		require.Equal(t, priv, priv2)
		priv3, err := ParsePrivateKey(EncodeSignature(priv)) // 64-byte form
		require.NoError(t, err)
		require.Equal(t, priv, priv3)
		sig2, err := ParseSignature(EncodeSignature(sig))
		require.NoError(t, err)
		require.Equal(t, sig, sig2)

		_, err = ParsePublicKey("not base64!")
		require.ErrorContains(t, err, "not base64")
		_, err = ParsePublicKey(EncodeSignature(sig))
		require.ErrorContains(t, err, "64 bytes, want 32")
		_, err = ParseSignature(EncodePublicKey(pub))
		require.ErrorContains(t, err, "32 bytes, want 64")
		_, err = ParsePrivateKey(EncodePublicKey(pub) + "AAAA")
		require.Error(t, err)
	})
}

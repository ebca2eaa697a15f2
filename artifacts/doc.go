// Package artifacts implements runfleet release artifacts: the archive format,
// its manifest, signatures, safe unpacking, the content-addressed local cache
// and the object stores releases are published to.
//
// This comment is the format specification. The release runner (runnerd) and
// tools written in other languages rely on it; change it only with a new
// format version.
//
// # Artifact
//
// A release artifact is a tar archive compressed with Zstandard (a ".tar.zst"
// file). Its release id is the lowercase hex SHA-256 of the artifact bytes
// exactly as stored, so identical content always yields the same release.
// Artifacts are deterministic: packing the same manifest and files twice
// gives the same bytes. Pack writes:
//
//   - manifest.json as the first entry, then every other file in ascending
//     byte order of its path;
//   - only regular files (no directory entries; directories are implied by
//     the paths);
//   - USTAR headers with mtime 0 (1970-01-01T00:00:00Z), uid and gid 0, empty
//     uname and gname, mode 0755 for executables and 0644 otherwise;
//   - one zstd frame written by github.com/klauspost/compress/zstd with
//     concurrency 1, level "better", an 8 MiB window and CRC enabled.
//
// Entry paths are slash-separated, relative and canonical: no leading "/",
// no "." or ".." components, no empty components, no backslashes or NUL
// bytes, at most 255 bytes.
//
// # Manifest
//
// manifest.json is a JSON object (at most 1 MiB, unknown fields refused):
//
//	{
//	  "format_version": 1,
//	  "workflow": "image-tiles",
//	  "tasks": [{"name": "Resize", "version": "v1.2"}],
//	  "entrypoints": {"linux/amd64": "bin/linux-amd64/tiles",
//	                  "linux/arm64": "bin/linux-arm64/tiles"},
//	  "build": {"go_version": "go1.26.4", "source_revision": "3f2a9c1"}
//	}
//
// format_version is 1. workflow is a slug matching ^[a-z0-9][a-z0-9-]{0,99}$.
// tasks lists at least one task identifier: a name of 1 to 256 bytes and a
// version matching ^v(\d+)\.(\d+)$, no identifier twice; Pack sorts them by
// name then version. entrypoints maps each supported platform ("linux/amd64",
// "linux/arm64"; at least one) to the path of an executable regular file in
// the archive. build is optional metadata that must not vary between builds
// of the same source (no timestamps, no host names).
//
// # Signatures
//
// A release may be signed with ed25519: the signature is over the 32 raw
// bytes of the SHA-256 digest (the release id decoded from hex), and is
// detached from the artifact. Keys and signatures are exchanged as standard
// base64 text: a public key is its 32 bytes, a private key its 32-byte seed,
// a signature its 64 bytes. A runner configured with trusted public keys
// refuses a release that is unsigned or whose signature no trusted key
// verifies; a runner with no trusted keys does not require signatures.
//
// # Unpacking
//
// Unpack treats an artifact as hostile until proven otherwise. It stores the
// download in a temporary file while hashing it and refuses a digest mismatch
// before extracting anything. It then extracts into a fresh temporary
// directory and renames it into place, so a failure leaves nothing unpacked.
// It accepts only regular files and directories with canonical paths, and
// refuses links, devices, FIFOs, duplicate entries, a missing or invalid
// manifest, entrypoints that are not executable regular files, and archives
// past the limits of [Limits] (entries, total and per-file unpacked bytes,
// compressed size, compression ratio and zstd window).
//
// # Cache and stores
//
// A [Cache] keeps unpacked releases under <dir>/<release id>, fetched and
// unpacked at most once per process, and evicts the least recently used
// releases not in use. A [Store] is a minimal object store (put, get,
// exists, list) chosen by URL with [OpenStore]: "file:///dir" is a local
// directory ([FileStore]), "s3://bucket/optional/prefix" a bucket of AWS S3,
// MinIO, LocalStack or any S3 API ([S3Store]; key k is object prefix/k).
// The S3 store takes its endpoint from ?endpoint=URL, else from the AWS
// SDK's configuration (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL); with a custom
// endpoint buckets are addressed path-style. Credentials come from the
// standard AWS chain and the region defaults to us-east-1. Bodies of 16 MiB
// and more are uploaded in parts. Either way an object appears whole or not
// at all. Transient failures (5xx, throttling, resets, timeouts, truncated
// responses) are retried with backoff, and a read whose connection breaks
// resumes from where it stopped, on the same object version.
package artifacts

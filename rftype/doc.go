// Package rftype is runfleet's shared vocabulary: the few values that every
// layer (the queue, the SDK, the release runner, artifacts, the CLI and the
// control plane) names the same way and checks by the same rules. It imports
// only the standard library, so any package can import it; the other
// packages alias these types rather than copy them.
//
// # Task identifier
//
// A task implementation is named by a task identifier: a name of 1 to
// [MaxNameLen] bytes and a version vMAJOR.MINOR, written "Resize@v1.2".
// [TaskIdentifier] is the identifier as written, in code, in manifests and in
// worker protocol frames (JSON {"name": ..., "version": ...});
// [Identifier] is the same identifier validated, its version parsed into
// numbers, as the queue stores and compares it. [TaskIdentifier.Parse] and
// [Identifier.TaskIdentifier] convert between the two; invalid identifiers
// are refused with errors wrapping [ErrInvalidIdentifier].
//
// # Version rule
//
// A runner serving v1.5 of a task may run a task submitted as v1.3: names
// and majors must be equal and the runner's minor must be at least the
// task's ([Identifier.CanRun]). A minor version adds, a major version breaks.
//
// # Slug
//
// Clusters, workflows and deploy targets are named by slugs: 1 to 100
// lowercase letters, digits and dashes, starting with a letter or digit
// ([SlugPattern]). [ValidateSlug] checks one and says which kind of slug was
// wrong; its errors wrap [ErrInvalidSlug].
//
// # Release id
//
// A release of a workflow is named by its release id: the 64 lowercase hex
// digits of the SHA-256 of its artifact ([ReleaseIDLength]). Equal ids mean
// byte-identical artifacts. [ValidateReleaseID] checks one; its errors wrap
// [ErrInvalidReleaseID].
package rftype

// Package infra is the deployer behind `runfleet infra`: it keeps a runfleet
// stack (a bucket, the submit and sweep functions, their roles, log groups,
// the sweep schedule, the HTTP API and the S3 notifications of storage
// automations) in the state a Stack describes, on AWS, LocalStack or MinIO.
//
// # How it works
//
// Every resource is a small type that reads its current state, compares it
// with the desired one (naming the fields that differ), and creates or
// updates it. Plan only reads; Deploy applies resource by resource in
// dependency order, so a resource that needs another's ARN is planned after
// that one exists. Every create first looks the resource up by name, which
// is what lets a deploy killed halfway run again and converge. Fields a
// service normalises (IAM's URL-encoded policy JSON, list order) are
// normalised before comparing, so a second deploy reports no change.
//
// # Ownership
//
// Every resource that takes tags is tagged runfleet:stack=<stack>; things
// without tags (Lambda permissions, notification configurations, schedules
// inside the stack's group) are owned by their id or name prefix
// runfleet-<stack>-. Deploy refuses to take over a resource tagged for
// another stack; destroy refuses, before deleting anything, when a resource
// with one of the stack's names is untagged or tagged for another stack.
package infra

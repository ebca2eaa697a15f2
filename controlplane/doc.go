// Package controlplane is runfleet's control plane: one set of handlers for
// the HTTP API v1, event-triggered submission (S3 notifications, schedules),
// automations, the sweep and job notifications, served three ways: by the
// submit and sweep AWS Lambda functions (functions/), by `runfleet gateway`
// (net/http plus an in-process scheduler), and reached by the CLI's --api
// mode through Client.
//
// # HTTP API v1
//
// JSON in and out. Every error is an RFC 9457 problem document
// (Content-Type application/problem+json) with type, title, status, detail
// and, for a bad field, "field" naming it (a JSON path such as "input" or
// "max_retries"). Every route but /healthz needs "Authorization: Bearer
// <token>" (see Tokens).
//
//	POST /v1/jobs                  submit scope. Body SubmitJobRequest, at most
//	                               1 MiB (413 beyond). Header Idempotency-Key:
//	                               the same key within 24 h returns the same
//	                               job with 200 instead of 201; the same key
//	                               with a different body is 422.
//	GET  /v1/jobs/{id}             read scope. The job (also archived jobs).
//	GET  /v1/jobs?cluster=&state=&limit=&cursor=
//	                               read scope. JobPage, newest first; limit
//	                               1..1000, default 100. Pass next_cursor
//	                               back as cursor for the next page; ""
//	                               means there is none.
//	POST /v1/jobs/{id}/cancel      submit scope. The job after the change.
//	POST /v1/jobs/{id}/retry       submit scope. The job after the change.
//	GET  /v1/clusters              read scope. ClusterList.
//	POST /v1/events/s3             submit scope. An S3 event notification
//	                               (events.S3Event JSON, as MinIO's webhook
//	                               target or S3 send it). 200 with EventReport.
//	GET  /healthz                  no token. 200 {"status":"ok"} when Redis
//	                               answers, else 503.
//
// # Tokens
//
// A token is "rf_" followed by 43 base64url characters (256 random bits).
// Redis keeps only its SHA-256; comparison of the presented token's hash
// against the stored one is constant-time. Scopes are ordered: read < submit
// < admin, a higher scope includes the lower ones. A token may be limited to
// clusters; then it may only submit to, list and read jobs of those
// clusters. No or unknown token: 401 with WWW-Authenticate: Bearer. Wrong
// scope or cluster: 403. Each token has a token bucket in Redis (default
// 50 requests/s, burst 100): over it, 429 with Retry-After in seconds.
// Tokens never appear in logs or errors.
//
// # Idempotency
//
// Every submission may carry an idempotency key. The first submission with a
// key reserves it with the job id it will create and a fingerprint of the
// request; a repeat finds the job id and returns that job (creating it if
// the first submitter crashed before it wrote the job), so however often a
// submission is retried or an event delivered, one job exists. Events and
// schedules derive the key from what they describe: "s3:<automation>:<bucket>/<key>@<version id or etag>"
// and "cron:<automation>:<tick unix seconds>".
package controlplane

// Command submit is runfleet's submit function for AWS Lambda: the HTTP API
// v1 behind an API Gateway HTTP API (payload format 2.0) or a function URL,
// S3 event notifications of the buckets storage automations watch, and the
// EventBridge schedules of cron automations (target input {"automation":
// ID, "scheduled_time": "<aws.scheduler.scheduled-time>"}). See
// controlplane.Server.InvokeSubmit.
//
// It is deployed on the provided.al2023 runtime, arm64 or x86_64, as the
// zip `go tool task functions` writes (dist/functions/submit-<arch>.zip,
// one executable named bootstrap, so the handler setting is "bootstrap").
// Environment (see controlplane.ConfigFromEnv):
//
//   - RUNFLEET_REDIS_URL_SECRET: the ARN of an SSM SecureString parameter
//     or a Secrets Manager secret holding the Redis URL (or {"url": ...}),
//     read once at start, so the password is not in the function's
//     configuration; or RUNFLEET_REDIS_URL, the URL itself. One is
//     required.
//   - RUNFLEET_STORE and RUNFLEET_RETENTION: optional.
//   - AWS_ENDPOINT_URL*: the SDK's endpoint variables, for LocalStack.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/runfleet/runfleet/controlplane"
)

func main() {
	// Built once per execution environment: warm invocations reuse the
	// Redis connection pool. Nothing closes it: the process ends with the
	// execution environment.
	cfg, _, err := controlplane.ConfigFromEnv(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "submit: init:", err)
		os.Exit(1)
	}
	srv, err := controlplane.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "submit: init:", err)
		os.Exit(1)
	}
	lambda.Start(srv.InvokeSubmit)
}

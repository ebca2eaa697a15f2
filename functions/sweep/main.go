// Command sweep is runfleet's sweep function for AWS Lambda, invoked once
// a minute by an EventBridge schedule (a rule on LocalStack): it re-queues dead runners' tasks,
// republishes outboxes, drops staged chunks of attempts that never
// committed, archives finished jobs to RUNFLEET_STORE, delivers job
// notifications, and prints each cluster's queue depth on stdout in
// CloudWatch embedded metric format, which Lambda turns into metrics. See
// controlplane.Server.Sweep.
//
// It is deployed on the provided.al2023 runtime, arm64 or x86_64, as the
// zip `go tool task functions` writes (dist/functions/sweep-<arch>.zip,
// one executable named bootstrap, so the handler setting is "bootstrap").
// With RUNFLEET_SCHEDULE_MODE set it also keeps one EventBridge schedule
// per cron automation in sync with the automations in Redis, and fires
// due cron ticks itself: those EventBridge cannot express, and any it
// missed (see controlplane/schedules.go).
//
// Environment (see controlplane.ConfigFromEnv):
//
//   - RUNFLEET_REDIS_URL_SECRET: the ARN of an SSM SecureString parameter
//     or a Secrets Manager secret holding the Redis URL (or {"url": ...}),
//     read once at start; or RUNFLEET_REDIS_URL, the URL itself. One is
//     required.
//   - RUNFLEET_STORE and RUNFLEET_RETENTION: optional.
//   - RUNFLEET_SCHEDULE_MODE ("scheduler" on AWS, "rules" on LocalStack),
//     RUNFLEET_STACK, RUNFLEET_SCHEDULE_TARGET_ARN (the submit function),
//     RUNFLEET_SCHEDULE_ROLE_ARN (scheduler mode: the role EventBridge
//     Scheduler assumes to invoke it) and RUNFLEET_SCHEDULE_GROUP
//     (default runfleet-<stack>): optional, all or none.
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
	// Built once per execution environment, like the submit function's.
	cfg, _, err := controlplane.ConfigFromEnv(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep: init:", err)
		os.Exit(1)
	}
	// Lambda reads embedded-metric-format lines from the function's output.
	cfg.Metrics = os.Stdout
	srv, err := controlplane.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep: init:", err)
		os.Exit(1)
	}
	lambda.Start(srv.InvokeSweep)
}

// Command sweep is runfleet's sweep function for AWS Lambda, invoked by an
// EventBridge rule on rate(1 minute): it re-queues dead runners' tasks,
// republishes outboxes, drops staged chunks of attempts that never
// committed, archives finished jobs to RUNFLEET_STORE, delivers job
// notifications, and prints each cluster's queue depth on stdout in
// CloudWatch embedded metric format, which Lambda turns into metrics. See
// controlplane.Server.Sweep.
//
// It is deployed on the provided.al2023 runtime, arm64 or x86_64, as the
// zip `go tool task functions` writes (dist/functions/sweep-<arch>.zip,
// one executable named bootstrap, so the handler setting is "bootstrap").
// Environment: RUNFLEET_REDIS_URL (required), RUNFLEET_STORE and
// RUNFLEET_RETENTION (see controlplane.ConfigFromEnv).
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

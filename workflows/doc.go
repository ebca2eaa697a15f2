// Package workflows is the runfleet SDK: define tasks in Go, submit jobs to
// clusters, and run them on a fleet of runners coordinated through Redis.
//
// # Tasks
//
// A task is a struct whose exported fields are its JSON input, with an
// Execute method. It may name itself with Identifier; otherwise its name is
// the type name and its version v0.0.
//
//	type Resize struct {
//		Tile string `json:"tile"`
//	}
//
//	func (*Resize) Identifier() workflows.TaskIdentifier {
//		return workflows.NewTaskIdentifier("images.Resize", "v1.2")
//	}
//
//	func (r *Resize) Execute(ctx context.Context) error { ... }
//
// A runner at v1.2 also runs tasks submitted as v1.0 or v1.1, never v1.3 or
// v2.x.
//
// # Subtasks and dependencies
//
// Inside Execute, SubmitSubtask buffers a subtask. The buffer is committed
// atomically with the task's success; a failing execution commits nothing,
// so retries never duplicate subtasks. WithDependencies makes a subtask wait
// until the given siblings are complete, subtrees included.
//
//	a, _ := workflows.SubmitSubtask(ctx, &Fetch{})
//	b, _ := workflows.SubmitSubtask(ctx, &Fetch{}, workflows.WithCluster("gpu"))
//	workflows.SubmitSubtask(ctx, &Merge{}, workflows.WithDependencies(a, b))
//
// # Running
//
//	client, _ := workflows.NewClient(ctx) // $RUNFLEET_REDIS_URL
//	runner, _ := client.NewRunner(ctx, "dev", &Resize{}, &Merge{})
//	err := runner.RunForever(ctx, workflows.WithConcurrency(4))
//
// RunAll returns once no task the runner can run is left, which suits tests
// and batch scripts.
//
// # Failures
//
// An error or panic fails an execution. A task with retries left is queued
// again; otherwise it fails and its job fails: no further task of the job is
// handed out until JobClient.Retry, which re-queues the failed tasks and
// never re-runs computed ones. An Optional subtask's failure is contained:
// the subtask becomes failed_optional, the not-yet-run tasks below it are
// skipped, and the job goes on.
package workflows

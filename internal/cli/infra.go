package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/infra"
	"github.com/runfleet/runfleet/workflows"
)

// infraFlags are the flags every infra subcommand shares.
type infraFlags struct {
	file, stack, target, endpoint, region string
	zipDir, arch, redisSecret             string
	asJSON, adopt                         bool
}

func (f *infraFlags) add(cmd *cobra.Command, desired bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.file, "file", "", "stack file (TOML, see infra/stack.example.toml); flags override its keys")
	fl.StringVar(&f.stack, "stack", "", "stack name: resources are named runfleet-<stack>-<thing> (required, here or in --file)")
	fl.StringVar(&f.target, "target", "", "aws, localstack or minio (required, here or in --file)")
	fl.StringVar(&f.endpoint, "endpoint-url", "", "endpoint of every service (default $AWS_ENDPOINT_URL / $AWS_ENDPOINT_URL_<SERVICE>; localstack: "+infra.LocalStackEndpoint+")")
	fl.StringVar(&f.region, "region", "", "region (default $AWS_REGION or the profile's; us-east-1 on localstack and minio)")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	if desired {
		fl.StringVar(&f.zipDir, "zip-dir", "", "directory of the function zips (default dist/functions, built by go tool task functions)")
		fl.StringVar(&f.arch, "arch", "", "function architecture: arm64 or x86_64 (default arm64)")
		fl.StringVar(&f.redisSecret, "redis-url-secret", "", "ARN of the SSM SecureString parameter or Secrets Manager secret holding the Redis URL")
		fl.BoolVar(&f.adopt, "adopt", false, "take over resources with the stack's names that carry no runfleet:stack tag (tag them for the stack; destroy then deletes them)")
	}
}

// infraEngine builds the engine for a subcommand: plan and deploy check
// the whole desired state first; plan, deploy and destroy read the
// automations.
func (a *app) infraEngine(ctx context.Context, f *infraFlags, desired, withAutomations bool) (*infra.Engine, error) {
	var st infra.Stack
	if f.file != "" {
		var err error
		if st, err = infra.LoadStack(f.file); err != nil {
			return nil, err
		}
	}
	for _, o := range []struct {
		dst *string
		v   string
	}{{&st.Name, f.stack}, {&st.Target, f.target}, {&st.EndpointURL, f.endpoint}, {&st.Region, f.region},
		{&st.Functions.ZipDir, f.zipDir}, {&st.Functions.Architecture, f.arch}, {&st.Functions.RedisURLSecret, f.redisSecret}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	switch st.Target {
	case infra.TargetAWS, infra.TargetLocalStack, infra.TargetMinIO:
	case "":
		return nil, usageErrorf("missing --target (aws, localstack or minio)")
	default:
		return nil, usageErrorf("unknown --target %q: want aws, localstack or minio", st.Target)
	}
	if st.Name == "" {
		return nil, usageErrorf("missing --stack NAME")
	}
	if desired {
		if err := st.Validate(); err != nil {
			return nil, err
		}
	}
	opts := infra.Options{Logger: a.logger, Adopt: f.adopt}
	if withAutomations {
		if err := a.readAutomations(ctx, &opts); err != nil {
			return nil, err
		}
	}
	return infra.New(ctx, st, opts)
}

// readAutomations reads the fleet's automations when a Redis URL is given
// (--redis or $RUNFLEET_REDIS_URL); without one, infra leaves the cron
// schedules and S3 notifications as they are and says so.
func (a *app) readAutomations(ctx context.Context, opts *infra.Options) error {
	if a.redisURL == "" && os.Getenv(controlplane.EnvRedisURL) == "" {
		return nil
	}
	return a.withClient(ctx, func(c *workflows.Client) error {
		autos, err := controlplane.ListAutomations(ctx, c)
		if err != nil {
			return fmt.Errorf("read automations: %w", err)
		}
		opts.Automations, opts.AutomationsKnown = autos, true
		return nil
	})
}

func (a *app) infraCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "infra",
		Short: "Deploy the fleet's bucket, functions, schedules and API to AWS, LocalStack or MinIO",
		Long: `infra keeps a stack (a bucket with versioning and an archive lifecycle, a
read-only policy for runners, the submit and sweep Lambda functions with
their role and log groups, the sweep's schedule, the HTTP API and the S3
notifications of storage automations) in the state a stack file and flags
describe.

plan shows what deploy would change; deploy applies it and is idempotent; a
second deploy changes nothing. Every resource is named runfleet-<stack>-…;
those that take tags are tagged runfleet:stack=<stack>. Lambda permissions,
the stack's entries in bucket notifications and the schedules in the stack's
schedule group take no tags and are owned by their names and ids. deploy
refuses a resource with one of the stack's names tagged for another stack,
or untagged unless --adopt is given (an empty untagged bucket, as an
interrupted deploy leaves it, is taken over). destroy deletes only what the
stack owns, and checks everything first: if a name is taken by an untagged
or another stack's resource, or the bucket holds objects without
--force-delete-bucket, it refuses and deletes nothing.

Credentials, region and endpoints come from the standard AWS configuration
($AWS_PROFILE, $AWS_REGION, $AWS_ENDPOINT_URL, ...). With --redis or
$RUNFLEET_REDIS_URL, plan and deploy also read the fleet's automations to
sync cron schedules and S3 notifications; without, those are left alone.`,
		Example: `  runfleet infra plan --stack dev --target aws --redis-url-secret arn:aws:ssm:eu-west-1:123456789012:parameter/runfleet/dev/redis-url
  runfleet infra deploy --file infra/stack.example.toml --redis-url-secret arn:aws:ssm:eu-west-1:123456789012:parameter/runfleet/dev/redis-url
  runfleet infra outputs --stack dev --target aws --json
  runfleet infra destroy --stack dev --target aws`,
		Args: groupArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.infraPlanCmd(), a.infraDeployCmd(), a.infraDestroyCmd(), a.infraOutputsCmd())
	return cmd
}

func (a *app) infraPlanCmd() *cobra.Command {
	var f infraFlags
	cmd := &cobra.Command{
		Use:   "plan --stack NAME --target aws|localstack|minio",
		Short: "Show what deploy would create or change, changing nothing",
		Long: `Read every resource of the stack and print, one per line, whether deploy
would create it (+), update it (~, with the fields that differ) or leave it
(=), then a summary. It changes nothing.`,
		Example: `  runfleet infra plan --stack dev --target localstack --redis-url-secret arn:aws:ssm:us-east-1:000000000000:parameter/runfleet/dev/redis-url
  runfleet infra plan --file stack.toml --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.infraEngine(cmd.Context(), &f, true, true)
			if err != nil {
				return err
			}
			rep, err := e.Plan(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(a.out, rep)
			}
			printReport(a.out, rep)
			fmt.Fprintf(a.out, "Plan: %d to create, %d to update, %d unchanged.\n",
				rep.Count(infra.ActionCreate), rep.Count(infra.ActionUpdate), rep.Count(infra.ActionNone))
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

func (a *app) infraDeployCmd() *cobra.Command {
	var f infraFlags
	cmd := &cobra.Command{
		Use:   "deploy --stack NAME --target aws|localstack|minio",
		Short: "Create or update the stack's resources",
		Long: `Create or update every resource of the stack, in dependency order, printing
each as it is done. Run it again at any time: it changes only what differs
(a function's code only when the zip's SHA-256 differs), and a deploy that
was interrupted converges when run again.

A resource with one of the stack's names that is tagged for another stack
is refused; one without a runfleet:stack tag is refused too unless --adopt
is given, which tags it for the stack (overwriting its settings, and
destroy deletes it later). An empty untagged bucket is taken over without
--adopt: a deploy interrupted after creating the bucket leaves it so.
Deploy plans the whole stack before it changes anything, so a refused
deploy has changed nothing.

The function zips come from dist/functions; build them first with
"go tool task functions".`,
		Example: `  runfleet infra deploy --stack dev --target aws --redis-url-secret arn:aws:ssm:eu-west-1:123456789012:parameter/runfleet/dev/redis-url
  runfleet infra deploy --stack dev --target minio --endpoint-url http://localhost:9000
  runfleet infra deploy --file stack.toml --adopt`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.infraEngine(cmd.Context(), &f, true, true)
			if err != nil {
				return err
			}
			var progress func(infra.Change)
			if !f.asJSON {
				progress = func(c infra.Change) { fmt.Fprintln(a.out, formatChange(c)) }
			}
			rep, err := e.Deploy(cmd.Context(), progress)
			if f.asJSON {
				if jerr := writeJSON(a.out, rep); jerr != nil {
					return jerr
				}
			} else {
				printNotes(a.out, rep)
			}
			if err != nil {
				return err
			}
			if !f.asJSON {
				fmt.Fprintf(a.out, "Deployed stack %s: %d created, %d updated, %d unchanged.\n", e.Stack().Name,
					rep.Count(infra.ActionCreate), rep.Count(infra.ActionUpdate), rep.Count(infra.ActionNone))
			}
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

func (a *app) infraDestroyCmd() *cobra.Command {
	var (
		f     infraFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "destroy --stack NAME --target aws|localstack|minio",
		Short: "Delete every resource the stack owns",
		Long: `Delete the stack's resources in reverse order. Resources that take tags are
deleted only with the stack's names AND the tag runfleet:stack=<stack>; the
Lambda permissions, the stack's entries in bucket notifications (other
entries stay) and the cron rules or schedules are owned by their names.

destroy first reads every resource and refuses, deleting nothing, when one
of the names is taken by an untagged resource or one of another stack, or
when the bucket still holds objects (archived jobs and releases) and
--force-delete-bucket is not given. --force-delete-bucket deletes every
object version in the bucket, which cannot be undone.`,
		Example: `  runfleet infra destroy --stack dev --target aws
  runfleet infra destroy --stack dev --target minio --endpoint-url http://localhost:9000 --force-delete-bucket`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.infraEngine(cmd.Context(), &f, false, true)
			if err != nil {
				return err
			}
			var progress func(infra.Change)
			if !f.asJSON {
				progress = func(c infra.Change) { fmt.Fprintln(a.out, formatChange(c)) }
			}
			rep, err := e.Destroy(cmd.Context(), infra.DestroyOptions{ForceDeleteBucket: force}, progress)
			if f.asJSON {
				if jerr := writeJSON(a.out, rep); jerr != nil {
					return jerr
				}
			}
			if errors.Is(err, infra.ErrBucketNotEmpty) {
				return &hintError{err: err, hint: "run again with --force-delete-bucket to delete every object version (archived jobs, releases) and the bucket"}
			}
			if err != nil {
				return err
			}
			if !f.asJSON {
				fmt.Fprintf(a.out, "Destroyed stack %s: %d deleted.\n", e.Stack().Name, rep.Count(infra.ActionDelete))
			}
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&force, "force-delete-bucket", false, "delete every object version in the bucket, then the bucket")
	return cmd
}

func (a *app) infraOutputsCmd() *cobra.Command {
	var f infraFlags
	cmd := &cobra.Command{
		Use:   "outputs --stack NAME --target aws|localstack|minio",
		Short: "Print the deployed stack's API URL, bucket and ARNs",
		Long: `Print what clients and runners of the stack need: the HTTP API's URL (for
runfleet --api), the bucket and archive store (RUNFLEET_STORE), the function
and role ARNs, and the runners' read-only policy ARN (attach it to the
runners' role).`,
		Example: `  runfleet infra outputs --stack dev --target aws
  export RUNFLEET_API_URL=$(runfleet infra outputs --stack dev --target aws --json | jq -r .api_url)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.infraEngine(cmd.Context(), &f, false, false)
			if err != nil {
				return err
			}
			o, err := e.Outputs(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(a.out, o)
			}
			t := newTable(a.out)
			for _, row := range [][2]string{{"stack", o.Stack}, {"target", o.Target}, {"region", o.Region},
				{"bucket", o.Bucket}, {"archive store", o.Store}, {"release store", o.ReleaseStore}, {"api url", o.APIURL},
				{"submit function", o.SubmitFunctionARN}, {"sweep function", o.SweepFunctionARN},
				{"functions role", o.FunctionsRoleARN}, {"scheduler role", o.SchedulerRoleARN},
				{"runner read policy", o.RunnerReadPolicyARN}} {
				if row[1] != "" {
					fmt.Fprintf(t, "%s:\t%s\n", row[0], row[1])
				}
			}
			return t.Flush()
		},
	}
	f.add(cmd, false)
	return cmd
}

// formatChange is one line of plan, deploy or destroy output.
func formatChange(c infra.Change) string {
	what := c.Type + " " + c.Name
	switch c.Action {
	case infra.ActionCreate:
		if c.Detail != "" {
			return "+ create     " + what + " (" + c.Detail + ")"
		}
		return "+ create     " + what
	case infra.ActionUpdate:
		return "~ update     " + what + ": " + c.Detail
	case infra.ActionDelete:
		if c.Detail != "" {
			return "- delete     " + what + " (" + c.Detail + ")"
		}
		return "- delete     " + what
	case infra.ActionSkip:
		return "! skip       " + what + ": " + c.Detail
	default:
		if c.Detail != "" {
			return "= no change  " + what + " (" + c.Detail + ")"
		}
		return "= no change  " + what
	}
}

func printReport(w io.Writer, rep infra.Report) {
	for _, c := range rep.Resources {
		fmt.Fprintln(w, formatChange(c))
	}
	printNotes(w, rep)
}

func printNotes(w io.Writer, rep infra.Report) {
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

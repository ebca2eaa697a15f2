// Package cli is the runfleet command line: clusters, jobs and a small process
// supervisor (parallel), built with cobra over the workflows SDK.
//
// Every command returns its error to Main, which prints it once as
// "runfleet: <message>" and turns it into the exit code: 0 success, 1 failure,
// 2 usage error, 3 timeout (job wait). Commands never call os.Exit, so tests run
// the whole command tree in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/runfleet/runfleet/workflows"
)

// Exit codes of runfleet.
const (
	ExitOK      = 0 // success; for job wait: the job completed
	ExitFailure = 1 // an error; for job wait: the job failed or was canceled
	ExitUsage   = 2 // bad command line
	ExitTimeout = 3 // job wait --timeout passed before the job finished
)

// exitError ends the command with code. err, when set, is printed as
// "runfleet: <err>"; commands that already printed their outcome leave it nil.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is a bad command line: exit code 2 and a pointer to --help.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// hintError adds a line telling the user what to do about err.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// Streams are the standard streams a command reads and writes.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Stdio is the process's standard streams.
func Stdio() Streams { return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// Main runs runfleet with args (without the program name) and returns the
// exit code. It is meant to be called once per process: it also silences the
// Redis client's own logging, whose connection errors runfleet reports itself.
func Main(ctx context.Context, args []string, s Streams) int {
	redis.SetLogger(quietRedisLogger{})
	return newApp(s).run(ctx, args)
}

// quietRedisLogger drops go-redis's internal log lines (dial retries and the
// like); the errors reach the user through the command's own error.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// app is one invocation: its streams, its global flags and the hooks tests
// replace.
type app struct {
	in       io.Reader
	out, err io.Writer

	redisURL string   // --redis
	jobCache string   // runner start --cache: where job caches live ("" = $RUNFLEET_CACHE)
	payloads string   // runner start --payloads: where large task inputs live ("" = $RUNFLEET_PAYLOADS)
	api      apiFlags // --api, --token (api.go)

	// terminal reports whether w is an interactive terminal (live progress).
	terminal func(w io.Writer) bool
	// notify and stopNotify subscribe to process signals (signal.Notify and
	// signal.Stop); tests replace them to send signals in-process.
	notify     func(c chan<- os.Signal, sig ...os.Signal)
	stopNotify func(c chan<- os.Signal)
	logger     *slog.Logger
	// service is service.name in what the command exports with
	// OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT); "" is "runfleet".
	service string
}

func newApp(s Streams) *app {
	if s.In == nil {
		s.In = strings.NewReader("")
	}
	if s.Out == nil {
		s.Out = io.Discard
	}
	if s.Err == nil {
		s.Err = io.Discard
	}
	return &app{
		in: s.In, out: s.Out, err: s.Err,
		terminal:   isTerminal,
		notify:     signal.Notify,
		stopNotify: signal.Stop,
		logger:     slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (a *app) run(ctx context.Context, args []string) int {
	if args == nil {
		args = []string{} // nil makes cobra read os.Args
	}
	root := a.rootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return a.report(cmd, err)
}

// report prints err once and maps it to an exit code.
func (a *app) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(a.err, "runfleet: %v\n", ue.err)
		if cmd != nil {
			fmt.Fprintf(a.err, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return ExitUsage
	}
	code := ExitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		err = ee.err
	}
	if err != nil {
		fmt.Fprintf(a.err, "runfleet: %v\n", err)
		var he *hintError
		if errors.As(err, &he) && he.hint != "" {
			fmt.Fprintf(a.err, "hint: %s\n", he.hint)
		}
	}
	return code
}

const exampleHeading = "Example:"

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "runfleet",
		Short: "Run workflows on a fleet of runners coordinated through Redis",
		Long: `runfleet manages clusters and jobs of a runfleet deployment, and supervises
runner processes.

Redis is found through --redis, else $RUNFLEET_REDIS_URL, else
` + workflows.DefaultRedisURL + `.

With --api URL (or $RUNFLEET_API_URL) and a token (--token or
$RUNFLEET_API_TOKEN), job submit, get, list, cancel, retry and wait go through
the HTTP API instead, for people who may submit jobs but hold no Redis
credentials. Every other command (job tasks, cluster, token, automation, ...)
uses Redis.`,
		Example: `  runfleet cluster create dev
  runfleet job submit --cluster dev --name hello --task Noop --version v1.0 --wait
  runfleet --redis redis://10.0.0.5:6379/0 job list
  RUNFLEET_API_TOKEN=rf_... runfleet --api https://runfleet.example.com job list`,
		Args:          groupArgs,
		RunE:          groupRunE,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	a.configureRoot(root)
	a.addAPIFlags(root)

	root.AddCommand(a.clusterCmd(), a.jobCmd(), a.taskCmd(), a.parallelCmd(), a.sweepCmd(), a.workflowCmd(), a.runnerCmd(), a.storeCmd(),
		a.tokenCmd(), a.automationCmd(), a.gatewayCmd(), a.notificationCmd(), a.infraCmd())
	root.AddCommand(a.consoleCmd())

	// Create cobra's help and completion commands now so they get examples too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = "  runfleet help job submit"
		case "completion":
			c.Example = "  runfleet completion bash > /etc/bash_completion.d/runfleet"
			for _, sh := range c.Commands() {
				if sh.Example == "" {
					sh.Example = "  runfleet completion " + sh.Name()
				}
			}
		}
	}
	return root
}

// configureRoot wires a top-level command (runfleet, or runnerd) to the
// app's streams, its global --redis flag and the usage-error conventions.
func (a *app) configureRoot(root *cobra.Command) {
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.err)
	root.PersistentFlags().StringVar(&a.redisURL, "redis", "",
		"Redis URL, redis:// or rediss:// (default $RUNFLEET_REDIS_URL, else "+workflows.DefaultRedisURL+")")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "\nExamples:\n", "\n"+exampleHeading+"\n", 1))
}

// groupArgs lets a command group receive unknown subcommand names, so that
// groupRunE can report them as usage errors.
func groupArgs(*cobra.Command, []string) error { return nil }

// groupRunE prints help for a bare command group and refuses unknown
// subcommands with suggestions.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &usageError{err: errors.New(msg)}
}

// exactArgs requires one positional argument per name.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usageErrorf("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unexpected argument %q", args[0])
	}
	return nil
}

// effectiveRedisURL is the URL NewClient will use.
func (a *app) effectiveRedisURL() string {
	if a.redisURL != "" {
		return a.redisURL
	}
	if u := os.Getenv("RUNFLEET_REDIS_URL"); u != "" {
		return u
	}
	return workflows.DefaultRedisURL
}

// client connects to Redis. The caller closes it.
func (a *app) client(ctx context.Context) (*workflows.Client, error) {
	service := a.service
	if service == "" {
		service = "runfleet"
	}
	opts := []workflows.ClientOption{workflows.WithLogger(a.logger), workflows.WithServiceName(service)}
	if a.redisURL != "" {
		opts = append(opts, workflows.WithRedisURL(a.redisURL))
	}
	if a.jobCache != "" {
		opts = append(opts, workflows.WithJobCache(a.jobCache))
	}
	if a.payloads != "" {
		opts = append(opts, workflows.WithPayloadStore(a.payloads))
	}
	c, err := workflows.NewClient(ctx, opts...)
	if err == nil {
		return c, nil
	}
	raw := a.effectiveRedisURL()
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	shown := redactURL(raw)
	if errors.Is(err, workflows.ErrInvalidRedisURL) {
		return nil, &hintError{err: errors.New(msg),
			hint: "use redis://[user:password@]host:port/db or rediss://… for TLS, via --redis or $RUNFLEET_REDIS_URL"}
	}
	return nil, &hintError{err: errors.New(msg),
		hint: fmt.Sprintf("is Redis (7 or later) running at %s? Point runfleet at it with --redis URL or $RUNFLEET_REDIS_URL", shown)}
}

// withClient connects, runs fn and closes the client.
func (a *app) withClient(ctx context.Context, fn func(*workflows.Client) error) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the configured URL"
	}
	return u.Redacted()
}

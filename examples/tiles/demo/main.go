// Command demo runs runfleet end to end on one machine with the tiles example
// workflow, using only the runfleet CLI once things are built:
//
//  1. Redis: $RUNFLEET_REDIS_URL if set, else a redis-server of its own on a
//     free port in a temporary directory;
//  2. builds the runfleet CLI and the tiles runner;
//  3. runfleet cluster create demo-<random>;
//  4. runfleet parallel -n 3 -- tiles --cluster demo-<random>: three runners;
//  5. runfleet job submit ... --task tiles.Survey --version v1.0: one job that
//     fans out into one task per tile plus a merge that waits for all of them;
//  6. runfleet job wait, runfleet job tasks, runfleet job get --json, and the
//     merged statistics the job wrote;
//  7. stops the runners (SIGTERM) and its Redis, removes its temporary files.
//
// It exits 0 when the job completed. Run it from the repository root:
//
//	go tool task demo
//	go tool task demo -- --rows 8 --cols 8 --runners 4
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runfleet/runfleet/examples/tiles/tiles"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

const usage = `Usage: go run ./examples/tiles/demo [flags]   (or: go tool task demo -- [flags])

Runs the tiles example workflow on a fleet of local runners, driving everything
through the runfleet CLI, and prints the job's progress, its task tree and the
merged elevation statistics. Uses $RUNFLEET_REDIS_URL when set, otherwise starts
a redis-server of its own. Exits 0 when the job completed.

Example:
  go tool task demo -- --rows 8 --cols 8 --runners 4

Flags:
`

type config struct {
	runners     int
	concurrency int
	rows, cols  int
	size        int
	seed        int64
	timeout     time.Duration
	keep        bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.runners, "runners", 3, "runner processes to start (runfleet parallel -n)")
	flag.IntVar(&cfg.concurrency, "concurrency", 2, "tasks each runner runs at once")
	flag.IntVar(&cfg.rows, "rows", 6, "tile rows")
	flag.IntVar(&cfg.cols, "cols", 8, "tile columns")
	flag.IntVar(&cfg.size, "size", 384, "pixels per tile side")
	flag.Int64Var(&cfg.seed, "seed", 42, "terrain seed")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "how long to wait for the job")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (binaries, tile files, runner log)")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || cfg.runners < 1 || cfg.concurrency < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demo is the state of one run: where things are and how to reach Redis.
type demo struct {
	cfg      config
	tmp      string
	runfleet string // CLI binary
	tiles    string // runner binary
	env      []string
	out      io.Writer
}

// run is the whole demo, printing to out; it returns an error when the job did
// not complete or anything along the way failed.
func run(ctx context.Context, cfg config, out io.Writer) (err error) {
	d := &demo{cfg: cfg, out: out}
	d.tmp, err = os.MkdirTemp("", "runfleet-demo-")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	defer func() {
		if cfg.keep {
			d.say("kept %s", d.tmp)
			return
		}
		if rmErr := os.RemoveAll(d.tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove temporary directory: %w", rmErr))
		}
	}()

	// 1. Redis.
	url := os.Getenv("RUNFLEET_REDIS_URL")
	if url != "" {
		d.step("redis: using $RUNFLEET_REDIS_URL (%s)", redactURL(url))
	} else {
		dir := filepath.Join(d.tmp, "redis")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		r, err := testenv.StartRedis(ctx, dir)
		if err != nil {
			return fmt.Errorf("start redis: %w", err)
		}
		defer func() {
			r.Stop()
			d.step("redis: stopped")
		}()
		url = r.URL()
		d.step("redis: started redis-server on %s (data in a temporary directory)", r.Addr)
	}
	d.env = append(os.Environ(), "RUNFLEET_REDIS_URL="+url)

	// 2. Binaries.
	if err := d.build(ctx); err != nil {
		return err
	}

	// 3. Cluster.
	slug := "demo-" + randomHex(3)
	if err := d.cli(ctx, d.out, "cluster", "create", slug); err != nil {
		return err
	}

	// 4. Runners.
	runners, err := d.startRunners(slug)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := runners.stop(d); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()

	// 5. The job.
	outDir := filepath.Join(d.tmp, "out")
	id, err := d.submit(ctx, slug, outDir, runners)
	if err != nil {
		return err
	}

	// 6. Progress, task tree, summary.
	t0 := time.Now()
	waitErr := d.cli(ctx, d.out, "job", "wait", id, "--timeout", durFlag(cfg.timeout))
	waited := waitSpan{start: t0, end: time.Now()}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if err := d.cli(ctx, d.out, "job", "tasks", id); err != nil {
		return err
	}
	job, jobErr := d.getJob(ctx, id)
	d.step("summary")
	if jobErr != nil {
		d.say("job %s: %v", id, jobErr)
	} else {
		d.printJob(job, waited)
	}
	if waitErr != nil {
		why := waitErr.Error()
		if ee := (*exec.ExitError)(nil); errors.As(waitErr, &ee) {
			switch ee.ExitCode() {
			case 1:
				why = "it failed or was canceled (runfleet job wait exited 1)"
			case 3:
				why = fmt.Sprintf("it did not finish within --timeout %s (runfleet job wait exited 3)", durFlag(cfg.timeout))
			}
		}
		d.say("the job did not complete: %s", why)
		d.say("last lines of the runners' log:")
		tail(d.out, runners.logPath, 30)
		return fmt.Errorf("job %s did not complete", id)
	}
	sum, err := tiles.ReadSummary(outDir)
	if err != nil {
		return err
	}
	d.printSummary(sum)
	if line := grepFirst(runners.logPath, "survey merged"); line != "" {
		d.say("runner log   %s", line)
	}
	if os.Getenv("RUNFLEET_REDIS_URL") != "" {
		d.say("kept         cluster %s and job %s stay in Redis: runfleet job tasks %s --all", slug, id, id)
	}
	return nil
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n==> "+format+"\n", args...)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "  "+format+"\n", args...)
}

// build compiles the CLI and the tiles runner into the temporary directory.
func (d *demo) build(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is not on PATH; the demo builds the runfleet CLI with it")
	}
	bin := filepath.Join(d.tmp, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return err
	}
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin+string(filepath.Separator),
		"github.com/runfleet/runfleet/cmd/runfleet", "github.com/runfleet/runfleet/examples/tiles")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build runfleet and the tiles runner (run the demo from the repository, e.g. go tool task demo): %w", err)
	}
	d.runfleet, d.tiles = filepath.Join(bin, "runfleet"), filepath.Join(bin, "tiles")
	d.step("build: runfleet CLI and tiles runner (%s)", time.Since(t0).Round(10*time.Millisecond))
	return nil
}

// cli runs the runfleet CLI, echoing the command line, with its output to w
// and its errors to stderr.
func (d *demo) cli(ctx context.Context, w io.Writer, args ...string) error {
	d.step("$ runfleet %s", strings.Join(quoteArgs(args), " "))
	cmd := d.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runfleet %s: %w", args[0]+" "+args[1], err)
	}
	return nil
}

func (d *demo) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.runfleet, args...)
	cmd.Env = d.env
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runners is the `runfleet parallel` process supervising the tiles runners.
type runners struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error // set once exited is closed
	logPath string
}

// startRunners starts `runfleet parallel -n N -- tiles --cluster slug` in its
// own process group (so a Ctrl-C reaches it once, from us), with its output
// in a log file.
func (d *demo) startRunners(slug string) (*runners, error) {
	args := []string{"parallel", "-n", strconv.Itoa(d.cfg.runners), "--",
		d.tiles, "--cluster", slug, "--concurrency", strconv.Itoa(d.cfg.concurrency)}
	d.step("$ runfleet parallel -n %d -- tiles --cluster %s --concurrency %d   (in the background)",
		d.cfg.runners, slug, d.cfg.concurrency)
	r := &runners{exited: make(chan struct{}), logPath: filepath.Join(d.tmp, "runners.log")}
	log, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	r.cmd = exec.Command(d.runfleet, args...)
	r.cmd.Env = d.env
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start runners: %w", err)
	}
	go func() {
		r.err = r.cmd.Wait()
		log.Close()
		close(r.exited)
	}()
	return r, nil
}

// stop sends SIGTERM to runfleet parallel, which forwards it to the runners;
// they finish their tasks and exit. A group that outlives the grace period
// is killed.
func (r *runners) stop(d *demo) error {
	select {
	case <-r.exited:
		return fmt.Errorf("runners exited early: %v", r.err)
	default:
	}
	t0 := time.Now()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
		return errors.New("runners did not stop within 45s of SIGTERM; killed them")
	}
	status := "exit 0"
	if r.err != nil {
		status = r.err.Error()
	}
	d.step("runners: stopped with SIGTERM in %s (%s)", time.Since(t0).Round(time.Millisecond), status)
	if r.err != nil {
		return fmt.Errorf("runfleet parallel: %w", r.err)
	}
	return nil
}

// submit submits the survey, retrying while the runners are still starting:
// job submit refuses a task that no runner of the cluster has registered.
func (d *demo) submit(ctx context.Context, slug, outDir string, r *runners) (string, error) {
	survey := tiles.Survey{
		Area: tiles.Area{South: 45.8, West: 5.9, North: 47.8, East: 10.5}, // roughly Switzerland
		Rows: d.cfg.rows, Cols: d.cfg.cols, Size: d.cfg.size, Seed: d.cfg.seed, OutDir: outDir,
	}
	input, err := json.Marshal(survey)
	if err != nil {
		return "", err
	}
	args := []string{"job", "submit", "--cluster", slug, "--name", "tiles-demo",
		"--task", tiles.SurveyName, "--version", tiles.Version, "--input", string(input)}
	d.step("$ runfleet %s", strings.Join(quoteArgs(args), " "))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var stdout, stderr bytes.Buffer
		cmd := d.command(ctx, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			id := strings.TrimSpace(stdout.String())
			if id == "" || strings.ContainsAny(id, " \n") {
				return "", fmt.Errorf("runfleet job submit printed %q, want a job id", stdout.String())
			}
			fmt.Fprintln(d.out, id)
			return id, nil
		}
		msg := strings.TrimSpace(stderr.String())
		select {
		case <-r.exited:
			tail(d.out, r.logPath, 30)
			return "", fmt.Errorf("the runners exited (%v) before the job could be submitted", r.err)
		default:
		}
		if !strings.Contains(msg, "unknown task") || time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, msg)
			return "", fmt.Errorf("runfleet job submit: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", errors.New("interrupted")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *demo) getJob(ctx context.Context, id string) (workflows.Job, error) {
	var buf bytes.Buffer
	if err := d.cli(ctx, io.MultiWriter(d.out, &buf), "job", "get", id, "--json"); err != nil {
		return workflows.Job{}, err
	}
	var job workflows.Job
	if err := json.Unmarshal(buf.Bytes(), &job); err != nil {
		return job, fmt.Errorf("decode runfleet job get --json output: %w", err)
	}
	return job, nil
}

// waitSpan is when the runfleet job wait process started and exited.
type waitSpan struct{ start, end time.Time }

func (d *demo) printJob(j workflows.Job, waited waitSpan) {
	d.say("job          %s %q on cluster %s: %s", j.ID, j.Name, j.Cluster, j.State)
	var counts []string
	for _, st := range []string{workflows.TaskComputed, workflows.TaskQueued, workflows.TaskRunning,
		workflows.TaskFailed, workflows.TaskSkipped, workflows.TaskFailedOptional} {
		if n := j.TaskCounts[st]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, st))
		}
	}
	d.say("tasks        %s", strings.Join(counts, ", "))
	if !j.StartedAt.IsZero() {
		d.say("timing       first task started %s after submission", dur(j.StartedAt.Sub(j.CreatedAt)))
	}
	if !j.FinishedAt.IsZero() && !j.StartedAt.IsZero() {
		d.say("             ran %s (submitted to finished: %s) on %d runners x %d slots",
			dur(j.FinishedAt.Sub(j.StartedAt)), dur(j.FinishedAt.Sub(j.CreatedAt)),
			d.cfg.runners, d.cfg.concurrency)
	}
	took := waited.end.Sub(waited.start)
	switch {
	case j.FinishedAt.IsZero():
		d.say("             runfleet job wait returned after %s", dur(took))
	case j.FinishedAt.Before(waited.start):
		d.say("             the job had finished before runfleet job wait started; it returned after %s", dur(took))
	default:
		// Job times are stamped by the runners' clocks, on this machine,
		// in whole milliseconds.
		d.say("             runfleet job wait exited %s after the job finished (%s in all, with its start and exit)",
			dur(waited.end.Sub(j.FinishedAt)), dur(took))
	}
}

func (d *demo) printSummary(s tiles.Summary) {
	st := s.Stats
	d.say("area         %s", s.Area)
	d.say("tiles        %d (%dx%d) of %dx%d px, seed %d", s.Tiles, s.Rows, s.Cols, s.Size, s.Size, s.Seed)
	d.say("pixels       %s, %.1f%% at sea level", thousands(st.Pixels), 100*float64(st.SeaPixels)/float64(max(st.Pixels, 1)))
	d.say("elevation    mean %.1f m, stddev %.1f m, min %.1f m, max %.1f m", st.Mean, st.StdDev, st.Min, st.Max)
	d.say("highest      %.1f m at %.4f N, %.4f E (tile %d/%d)", st.Max, st.Peak.Lat, st.Peak.Lon, s.PeakTile+1, s.Tiles)
	d.say("highlands    tile %d/%d has the highest mean, %.1f m", s.HighestMeanTile+1, s.Tiles, s.HighestMean)
	d.say("histogram")
	var top int64
	for _, c := range st.Histogram {
		top = max(top, c)
	}
	for i, c := range st.Histogram {
		bar := 0
		if top > 0 {
			bar = int((c*40 + top/2) / top)
		}
		lo := float64(i) * tiles.BinWidth
		d.say("  %4.0f-%4.0f m %-40s %s", lo, lo+tiles.BinWidth, strings.Repeat("█", bar), thousands(c))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redactURL hides a password in a Redis URL.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "://***@" + rest[at+1:]
	}
	return u
}

// quoteArgs single-quotes arguments a shell would split or expand.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'{}$*?[]\\|&;<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

// dur rounds a duration for display; job timestamps have millisecond precision.
func dur(d time.Duration) string {
	if d < time.Millisecond {
		return "<1ms"
	}
	return d.Round(time.Millisecond).String()
}

// durFlag formats a duration the way one would type it: 2m, not 2m0s.
func durFlag(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// thousands formats a count with thousands separators: 1234567 -> 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// tail prints the last n lines of a file.
func tail(w io.Writer, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "  (cannot read %s: %v)\n", path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines[max(0, len(lines)-n):] {
		fmt.Fprintln(w, "  | "+l)
	}
}

// grepFirst returns the first line of a file containing s, or "".
func grepFirst(path, s string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return sc.Text()
		}
	}
	return ""
}

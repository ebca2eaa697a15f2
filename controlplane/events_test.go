package controlplane_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

func s3Event(bucket, escapedKey, etag, version string) events.S3Event {
	var ev events.S3Event
	raw := `{"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-29T10:00:00.000Z",
	"eventName":"s3:ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"Config",
	"bucket":{"name":"` + bucket + `","arn":"arn:aws:s3:::` + bucket + `"},
	"object":{"key":"` + escapedKey + `","size":42,"eTag":"` + strings.ReplaceAll(etag, `"`, `\"`) + `","versionId":"` + version + `","sequencer":"1"}}}]}`
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		panic(err)
	}
	return ev
}

func TestAutomationsRefuseBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := controlplane.Automation{Name: "a", Cluster: "dev", Task: "Noop", Version: "v1.0"}
	for _, tc := range []struct {
		name string
		edit func(*controlplane.Automation)
		want string
	}{
		{"bad minute", func(a *controlplane.Automation) { a.Cron = "61 * * * *" }, `minute field "61"`},
		{"bad hour", func(a *controlplane.Automation) { a.Cron = "0 25 * * *" }, `hour field "25"`},
		{"bad seconds", func(a *controlplane.Automation) { a.Cron = "99 0 * * * *" }, `second field "99"`},
		{"wrong field count", func(a *controlplane.Automation) { a.Cron = "* * *" }, "expected 5 fields"},
		{"bad descriptor", func(a *controlplane.Automation) { a.Cron = "@sometimes" }, "descriptors"},
		{"bad timezone", func(a *controlplane.Automation) { a.Cron = "@hourly"; a.Timezone = "Mars/Olympus" }, "timezone"},
		{"bad glob", func(a *controlplane.Automation) { a.Storage = "s3://in/raw/"; a.Glob = "[a-" }, "glob"},
		{"bad storage URL", func(a *controlplane.Automation) { a.Storage = "http://in/raw" }, "s3://bucket/prefix"},
		{"both", func(a *controlplane.Automation) { a.Cron = "@hourly"; a.Storage = "s3://in/" }, "not both"},
		{"neither", func(a *controlplane.Automation) {}, "cron schedule or a storage location"},
		{"unknown cluster", func(a *controlplane.Automation) { a.Cron = "@hourly"; a.Cluster = "nowhere" }, "cluster not found"},
		{"unknown task", func(a *controlplane.Automation) { a.Cron = "@hourly"; a.Task = "Nope" }, "does not serve"},
		{"bad version", func(a *controlplane.Automation) { a.Cron = "@hourly"; a.Version = "1" }, "version"},
		{"input not an object", func(a *controlplane.Automation) { a.Cron = "@hourly"; a.Input = json.RawMessage(`[]`) }, "JSON object"},
	} {
		a := base
		tc.edit(&a)
		_, err := controlplane.CreateAutomation(b.ctx, b.client, a)
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
	}
	all, err := controlplane.ListAutomations(b.ctx, b.client)
	require.NoError(t, err)
	require.Empty(t, all, "nothing may be stored")

	_, err = controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "ok", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Cron: "0 3 * * *", Timezone: "Europe/Berlin"})
	require.NoError(t, err)
	_, err = controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "ok", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Cron: "@hourly"})
	require.ErrorContains(t, err, "already exists")
}

func TestStorageEventsMakeOneJobPerObjectVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "tiles", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Input: json.RawMessage(`{"zoom":12}`), Storage: "s3://in/raw/", Glob: "*.tif"})
	require.NoError(t, err)

	// A key with a space, a plus and a slash, URL-encoded as S3 sends it.
	ev := s3Event("in", "raw/2026/a+b%2Bc.tif", `"e1"`, "")
	rep, err := b.srv.HandleS3Event(b.ctx, ev)
	require.NoError(t, err)
	require.Len(t, rep.Submitted, 1)
	require.True(t, rep.Submitted[0].Created)
	jobID := rep.Submitted[0].JobID
	tasks, err := b.client.Jobs().Tasks(b.ctx, jobID)
	require.NoError(t, err)
	var in struct {
		Zoom   int                    `json:"zoom"`
		Object controlplane.ObjectRef `json:"object"`
	}
	require.NoError(t, json.Unmarshal([]byte(tasks[0].Input), &in))
	require.Equal(t, 12, in.Zoom, "the prototype input is kept")
	require.Equal(t, "raw/2026/a b+c.tif", in.Object.Key)
	require.Equal(t, "in", in.Object.Bucket)
	require.Equal(t, "e1", in.Object.ETag)
	require.EqualValues(t, 42, in.Object.Size)

	// Delivered again (at least once), or the same content uploaded again:
	// the same job.
	for range 3 {
		ev.Records[0].EventTime = ev.Records[0].EventTime.Add(time.Minute) // a re-upload has its own time
		rep, err = b.srv.HandleS3Event(b.ctx, ev)
		require.NoError(t, err)
		require.Len(t, rep.Submitted, 1)
		require.False(t, rep.Submitted[0].Created)
		require.Equal(t, jobID, rep.Submitted[0].JobID)
	}
	require.Equal(t, 1, b.jobCount(t))

	// New content, or a new version of a versioned object: a new job each.
	_, err = b.srv.HandleS3Event(b.ctx, s3Event("in", "raw/2026/a+b%2Bc.tif", `"e2"`, ""))
	require.NoError(t, err)
	for _, v := range []string{"v1", "v2", "v2"} {
		_, err = b.srv.HandleS3Event(b.ctx, s3Event("in", "raw/x.tif", `"e1"`, v))
		require.NoError(t, err)
	}
	require.Equal(t, 4, b.jobCount(t))

	// Keys the automation does not want, buckets nobody watches, and
	// deletions are ignored without error.
	for _, ev := range []events.S3Event{
		s3Event("in", "raw/readme.txt", `"e"`, ""),
		s3Event("in", "other/x.tif", `"e"`, ""),
		s3Event("elsewhere", "raw/x.tif", `"e"`, ""),
	} {
		rep, err = b.srv.HandleS3Event(b.ctx, ev)
		require.NoError(t, err)
		require.Empty(t, rep.Submitted)
		require.Len(t, rep.Ignored, 1)
	}
	del := s3Event("in", "raw/y.tif", `"e"`, "")
	del.Records[0].EventName = "s3:ObjectRemoved:Delete"
	rep, err = b.srv.HandleS3Event(b.ctx, del)
	require.NoError(t, err)
	require.Empty(t, rep.Submitted)
	require.True(t, b.log.Contains("no storage automation watches"), "ignored events are logged")

	// Paused: nothing; resumed: jobs again.
	_, err = controlplane.PauseAutomation(b.ctx, b.client, a.Name, true)
	require.NoError(t, err)
	rep, err = b.srv.HandleS3Event(b.ctx, s3Event("in", "raw/z.tif", `"e"`, ""))
	require.NoError(t, err)
	require.Empty(t, rep.Submitted)
	require.Equal(t, 4, b.jobCount(t))
}

func TestWebhookRouteNeedsAToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "all", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Storage: "s3://in/"})
	require.NoError(t, err)
	body, err := json.Marshal(s3Event("in", "k", `"e"`, ""))
	require.NoError(t, err)
	require.Equal(t, 401, b.do(t, "POST", "/v1/events/s3", "rf_wrong", body).status)
	read := b.token(t, controlplane.TokenSpec{Name: "read", Scope: controlplane.ScopeRead})
	require.Equal(t, 403, b.do(t, "POST", "/v1/events/s3", read, body).status)
	require.Equal(t, 401, b.do(t, "POST", "/v1/events/s3", read+"x", []byte("{")).status)
	require.Equal(t, 0, b.jobCount(t))
	tok := b.token(t, controlplane.TokenSpec{Name: "minio", Scope: controlplane.ScopeSubmit})
	require.Equal(t, 400, b.do(t, "POST", "/v1/events/s3", tok, []byte(`{"Records":`)).status)
	a := b.do(t, "POST", "/v1/events/s3", tok, body)
	require.Equal(t, 200, a.status, "%s", a.body)
	a = b.do(t, "POST", "/v1/events/s3", tok, body)
	require.Equal(t, 200, a.status)
	require.Equal(t, 1, b.jobCount(t))
}

// clock is a settable test clock shared by several servers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestCronTicksFireOnceAcrossSchedulers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "every2s", Cluster: "dev",
		Task: "Noop", Version: "v1.0", Cron: "@every 2s"})
	require.NoError(t, err)
	clk := &clock{t: a.CreatedAt}
	var servers []*controlplane.Server
	for range 3 {
		s, err := controlplane.New(controlplane.Config{Client: b.client, Now: clk.now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		servers = append(servers, s)
	}
	fireAll := func() {
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() {
				_, err := s.FireDueTicks(b.ctx)
				require.NoError(t, err)
			})
		}
		wg.Wait()
	}
	fireAll()
	require.Equal(t, 0, b.jobCount(t), "no tick is due at creation")
	for range 5 {
		clk.add(2 * time.Second)
		fireAll()
		fireAll()
	}
	require.Equal(t, 5, b.jobCount(t), "one job per tick, however many schedulers")
	jobs, err := b.client.Jobs().List(b.ctx, workflows.ListOptions{})
	require.NoError(t, err)
	names := map[string]bool{}
	for _, j := range jobs {
		require.False(t, names[j.Name], "tick %s fired twice", j.Name)
		names[j.Name] = true
	}

	// A scheduler that was down for an hour fires the latest missed tick
	// once, not 1,800 times.
	clk.add(time.Hour)
	fireAll()
	require.Equal(t, 6, b.jobCount(t))

	// The schedule function's event (EventBridge) for a tick the gateway
	// already fired is the same job.
	ticks, err := b.client.Queue().CronTicks(b.ctx)
	require.NoError(t, err)
	rep, err := b.srv.HandleSchedule(b.ctx, controlplane.ScheduleEvent{Automation: a.ID,
		ScheduledTime: time.UnixMilli(ticks[a.ID])})
	require.NoError(t, err)
	require.Len(t, rep.Submitted, 1)
	require.False(t, rep.Submitted[0].Created)
	require.Equal(t, 6, b.jobCount(t))

	// Paused automations fire nothing, and resume from now.
	_, err = controlplane.PauseAutomation(b.ctx, b.client, a.ID, true)
	require.NoError(t, err)
	count := b.jobCount(t)
	clk.add(10 * time.Second)
	fireAll()
	require.Equal(t, count, b.jobCount(t), "a paused automation fires nothing")
	_, err = controlplane.PauseAutomation(b.ctx, b.client, a.ID, false)
	require.NoError(t, err)
	fireAll()
	require.Equal(t, count, b.jobCount(t), "ticks missed while paused are not caught up")
	clk.add(2 * time.Second)
	fireAll()
	require.Equal(t, count+1, b.jobCount(t), "a resumed automation fires its next tick")
}

// receiver is a notification endpoint on a fixed loopback port that can
// fail requests, be stopped and be started again.
type receiver struct {
	t        *testing.T
	addr     string
	mu       sync.Mutex
	srv      *http.Server
	failNext atomic.Int32
	secret   string
	got      map[string][]controlplane.Notification // by delivery id
	bad      []string
}

func newReceiver(t *testing.T, secret string) *receiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &receiver{t: t, addr: l.Addr().String(), secret: secret, got: map[string][]controlplane.Notification{}}
	r.serve(l)
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook?k=v" }

func (r *receiver) serve(l net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.failNext.Add(-1) >= 0 {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := controlplane.VerifySignature(r.secret, req.Header.Get(controlplane.SignatureHeader), body, time.Now(), time.Hour); err != nil { // the test clock runs ahead
			r.bad = append(r.bad, err.Error())
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var n controlplane.Notification
		_ = json.Unmarshal(body, &n)
		id := req.Header.Get(controlplane.DeliveryHeader)
		r.got[id] = append(r.got[id], n)
	})}
	go func() { _ = r.srv.Serve(l) }()
}

func (r *receiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()
	_ = srv.Close()
}

func (r *receiver) restart() {
	l, err := net.Listen("tcp", r.addr)
	require.NoError(r.t, err)
	r.serve(l)
}

func (r *receiver) deliveries() map[string][]controlplane.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]controlplane.Notification{}
	for k, v := range r.got {
		out[k] = append([]controlplane.Notification(nil), v...)
	}
	require.Empty(r.t, r.bad, "every delivery must carry a valid signature")
	return out
}

func TestNotificationsAreDeliveredUntilAcknowledged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secret, err := b.client.Queue().NotifySecret(b.ctx)
	require.NoError(t, err)
	rcv := newReceiver(t, secret)
	rcv.failNext.Store(3)

	submit := func(name string) string {
		j, err := b.client.Jobs().SubmitRaw(b.ctx, workflows.SubmitRequest{Name: name, Cluster: "dev",
			Task: workflows.NewTaskIdentifier("Noop", "v1.0"), Notify: rcv.url()})
		require.NoError(t, err)
		return j.ID
	}
	first := submit("first")
	b.runJobs(t, "dev")

	// Deliver with passes as the gateway does; a failed attempt waits its
	// backoff, so step a test clock forward between passes.
	clk := &clock{t: time.Now()}
	srv, err := controlplane.New(controlplane.Config{Client: b.client, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	pass := func() (int, int) {
		d, f, err := srv.DeliverNotifications(b.ctx)
		require.NoError(t, err)
		return d, f
	}
	failures, delivered := 0, 0
	for range 20 {
		d, f := pass()
		failures += f
		delivered += d
		if d > 0 {
			break
		}
		clk.add(time.Minute)
	}
	require.Equal(t, 1, delivered)
	require.GreaterOrEqual(t, failures, 1, "the first passes fail")
	require.LessOrEqual(t, rcv.failNext.Load(), int32(0), "the receiver refused three requests first")
	got := rcv.deliveries()
	require.Len(t, got, 1)
	for id, ns := range got {
		require.True(t, strings.HasPrefix(id, first+"/"))
		require.Len(t, ns, 1)
		require.Equal(t, "job.finished", ns[0].Event)
		require.Equal(t, workflows.JobCompleted, ns[0].Job.State)
	}
	d, f0 := pass()
	require.Zero(t, d+f0, "an acknowledged notification is not sent again")

	// The receiver goes away while jobs finish, and comes back.
	rcv.stop()
	second, third := submit("second"), submit("third")
	b.runJobs(t, "dev")
	_, f := pass()
	require.Equal(t, 2, f)
	rcv.restart()
	clk.add(time.Minute)
	d, _ = pass()
	require.Equal(t, 2, d)
	got = rcv.deliveries()
	require.Len(t, got, 3)
	for _, id := range []string{second, third} {
		found := false
		for k := range got {
			found = found || strings.HasPrefix(k, id+"/")
		}
		require.True(t, found, "job %s notified", id)
	}

	// A canceled job is finished too; retried and finished again, it is
	// notified again.
	fourth := submit("fourth")
	require.NoError(t, b.client.Jobs().Cancel(b.ctx, fourth))
	clk.add(time.Minute)
	d, _ = pass()
	require.Equal(t, 1, d)
	require.NoError(t, b.client.Jobs().Retry(b.ctx, fourth))
	b.runJobs(t, "dev")
	clk.add(2 * time.Minute)
	d, _ = pass()
	require.Equal(t, 1, d)
	states := []string{}
	for k, ns := range rcv.deliveries() {
		if strings.HasPrefix(k, fourth+"/") {
			states = append(states, ns[0].Job.State)
		}
	}
	require.ElementsMatch(t, []string{workflows.JobCanceled, workflows.JobCompleted}, states)
}

func TestNotificationIsAbandonedAfterTheGiveUpTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rcv := newReceiver(t, "irrelevant")
	rcv.stop()
	j, err := b.client.Jobs().SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: "dev",
		Task: workflows.NewTaskIdentifier("Noop", "v1.0"), Notify: rcv.url()})
	require.NoError(t, err)
	require.NoError(t, b.client.Jobs().Cancel(b.ctx, j.ID))
	clk := &clock{t: time.Now().Add(controlplane.NotifyGiveUp + time.Minute)}
	log := &testenv.Buffer{}
	srv, err := controlplane.New(controlplane.Config{Client: b.client, Now: clk.now, Logger: slog.New(slog.NewTextHandler(log, nil))})
	require.NoError(t, err)
	_, f, err := srv.DeliverNotifications(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, f)
	require.True(t, log.Contains("abandoned"))
	require.False(t, log.Contains("k=v"), "the notify URL's query (often a secret) is not logged")
	clk.add(time.Hour)
	d, f, err := srv.DeliverNotifications(b.ctx)
	require.NoError(t, err)
	require.Zero(t, d+f)
}

func TestCronCatchUpAfterLongOutagesFiresOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	every, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "every-second",
		Cluster: "dev", Task: "Noop", Version: "v1.0", Cron: "* * * * * *"})
	require.NoError(t, err)
	daily, err := controlplane.CreateAutomation(b.ctx, b.client, controlplane.Automation{Name: "daily",
		Cluster: "dev", Task: "Noop", Version: "v1.0", Cron: "0 3 * * *"})
	require.NoError(t, err)
	// Ten days without a scheduler: 864,000 missed per-second ticks and
	// ten missed daily ones. Each automation fires its latest tick, once.
	clk := &clock{t: every.CreatedAt.Add(10 * 24 * time.Hour)}
	s, err := controlplane.New(controlplane.Config{Client: b.client, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	for range 3 {
		_, err := s.FireDueTicks(b.ctx)
		require.NoError(t, err)
	}
	require.Equal(t, 2, b.jobCount(t))
	ticks, err := b.client.Queue().CronTicks(b.ctx)
	require.NoError(t, err)
	require.Equal(t, clk.now().Truncate(time.Second).UnixMilli(), ticks[every.ID])
	last := time.UnixMilli(ticks[daily.ID]).UTC()
	require.Equal(t, 3, last.Hour())
	require.WithinDuration(t, clk.now(), last, 24*time.Hour)
}

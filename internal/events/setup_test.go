package events

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

const (
	// cluster every test submits to.
	cluster = "scans"
	// targetID is the MinIO webhook target's id, the <ID> of its
	// MINIO_NOTIFY_WEBHOOK_*_<ID> settings.
	targetID = "RF"
	// region is MinIO's MINIO_REGION; it appears in the target's ARN.
	region = "us-east-1"
)

// queueARN is the ARN a bucket notification names MinIO's webhook target
// by: arn:minio:sqs:<region>:<ID>:webhook.
var queueARN = "arn:minio:sqs:" + region + ":" + targetID + ":webhook"

// requireServers skips the test when redis-server or minio is not
// installed, naming the one that is missing and how to install it.
func requireServers(tb testing.TB, minio bool) {
	tb.Helper()
	if _, err := testenv.RedisServerPath(); err != nil {
		tb.Skip(err)
	}
	if _, err := testenv.MinIOPath(); minio && err != nil {
		tb.Skip(err)
	}
}

// fleet is a redis-server, a client of it, the cluster "scans" serving
// the bench tasks by declaration (no runner yet), and a submit token.
type fleet struct {
	redis *testenv.Redis
	wc    *workflows.Client
	token string
}

func newFleet(tb testing.TB, spec controlplane.TokenSpec) *fleet {
	tb.Helper()
	ctx := context.Background()
	r := testenv.NewRedis(tb)
	wc := newClient(tb, r)
	_, err := wc.Clusters().Create(ctx, cluster, "")
	require.NoError(tb, err)
	for _, task := range benchtask.All() {
		require.NoError(tb, wc.Clusters().Declare(ctx, cluster, workflows.IdentifierOf(task)))
	}
	if spec.Name == "" {
		spec.Name = "minio"
	}
	spec.Scope = controlplane.ScopeSubmit
	_, secret, err := controlplane.CreateToken(ctx, wc, spec)
	require.NoError(tb, err)
	return &fleet{redis: r, wc: wc, token: secret}
}

// newClient is a client of r, as a second process would have.
func newClient(tb testing.TB, r *testenv.Redis) *workflows.Client {
	tb.Helper()
	wc, err := workflows.NewClient(context.Background(), workflows.WithRedisURL(r.URL()),
		workflows.WithLogger(testLogger(tb)))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = wc.Close() })
	return wc
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startGateway serves a gateway with its own client of the fleet's Redis
// on a free loopback port, ticking cron automations every tick, until the
// test ends or stop is called. It returns the gateway's base URL.
func (f *fleet) startGateway(tb testing.TB, tick time.Duration) (url string, stop func()) {
	tb.Helper()
	srv, err := controlplane.New(controlplane.Config{Client: newClient(tb, f.redis), Logger: testLogger(tb)})
	require.NoError(tb, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	g := &controlplane.Gateway{Server: srv, TickEvery: tick, SweepEvery: -1, NotifyEvery: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, l) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(tb, <-done)
		})
	}
	tb.Cleanup(stop)
	return "http://" + l.Addr().String(), stop
}

// startRunner runs the bench tasks for the cluster in this process until
// the test ends.
func (f *fleet) startRunner(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := f.wc.NewRunner(ctx, cluster, benchtask.All()...)
	require.NoError(tb, err)
	done := make(chan error, 1)
	go func() { done <- r.RunForever(ctx, workflows.WithConcurrency(4)) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
	})
}

// jobs lists the cluster's jobs, newest first.
func (f *fleet) jobs(tb testing.TB) []workflows.Job {
	tb.Helper()
	jobs, err := f.wc.Jobs().List(context.Background(), workflows.ListOptions{Cluster: cluster, Limit: 1000})
	require.NoError(tb, err)
	return jobs
}

// rootTask is the root task of job id.
func (f *fleet) rootTask(tb testing.TB, id string) workflows.TaskInfo {
	tb.Helper()
	tasks, err := f.wc.Jobs().Tasks(context.Background(), id)
	require.NoError(tb, err)
	for _, task := range tasks {
		if task.Parent == -1 {
			return task
		}
	}
	tb.Fatalf("job %s has no root task", id)
	return workflows.TaskInfo{}
}

// storageAutomation creates a storage automation submitting Ingest jobs.
func (f *fleet) storageAutomation(tb testing.TB, name, storage, glob, input string) controlplane.Automation {
	tb.Helper()
	a, err := controlplane.CreateAutomation(context.Background(), f.wc, controlplane.Automation{
		Name: name, Cluster: cluster, Task: "Ingest", Version: benchtask.Version,
		Storage: storage, Glob: glob, Input: json.RawMessage(input)})
	require.NoError(tb, err)
	return a
}

// webhookEnv is the MinIO environment of a webhook target posting every
// event of the buckets that name it to endpoint, with token. With
// queueDir, MinIO keeps events there until the endpoint takes them.
func webhookEnv(endpoint, token, queueDir string) []string {
	env := []string{
		"MINIO_REGION=" + region,
		"MINIO_NOTIFY_WEBHOOK_ENABLE_" + targetID + "=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_" + targetID + "=" + endpoint,
		"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_" + targetID + "=" + token,
	}
	if queueDir != "" {
		env = append(env, "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_"+targetID+"="+queueDir)
	}
	return env
}

// notifyBucket makes MinIO post the bucket's object creations to the
// webhook target, optionally versioning the bucket first.
func notifyBucket(tb testing.TB, m *testenv.MinIO, bucket string, versioned bool) {
	tb.Helper()
	ctx := context.Background()
	c := m.Client()
	if versioned {
		_, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
		require.NoError(tb, err)
	}
	put := func() error {
		_, err := c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
			Bucket: aws.String(bucket),
			NotificationConfiguration: &types.NotificationConfiguration{QueueConfigurations: []types.QueueConfiguration{{
				QueueArn: aws.String(queueARN), Events: []types.Event{"s3:ObjectCreated:*"}}}},
		})
		return err
	}
	// MinIO serves S3 requests before it has registered its notification
	// targets (a step of its start that runs in the background); until then
	// it refuses the ARN as unknown.
	err := put()
	for deadline := time.Now().Add(20 * time.Second); err != nil && strings.Contains(err.Error(), "ARN does not exist") &&
		time.Now().Before(deadline); err = put() {
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(tb, err, "set the bucket notification; %s", m.LogTail())
	// A MinIO that has just started loads every bucket's metadata in the
	// background, and may replace a notification set before that load
	// with none (seen often with a fast-starting static build): keep it
	// set until it has been read back intact for a second.
	has := func() bool {
		out, err := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(bucket)})
		return err == nil && len(out.QueueConfigurations) == 1
	}
	stableSince := time.Now()
	for deadline := time.Now().Add(20 * time.Second); time.Since(stableSince) < time.Second; {
		require.True(tb, time.Now().Before(deadline), "the bucket notification of %s does not stay set; %s", bucket, m.LogTail())
		if !has() {
			require.NoError(tb, put(), "set the bucket notification again")
			stableSince = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// upload puts an object and returns its ETag (without quotes) and version
// id.
func upload(tb testing.TB, m *testenv.MinIO, bucket, key, content string) (etag, version string) {
	tb.Helper()
	out, err := m.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket),
		Key: aws.String(key), Body: bytes.NewReader([]byte(content))})
	require.NoError(tb, err)
	etag = aws.ToString(out.ETag)
	if len(etag) >= 2 && etag[0] == '"' {
		etag = etag[1 : len(etag)-1]
	}
	return etag, aws.ToString(out.VersionId)
}

// delivery is one notification MinIO posted, and the gateway's answer.
type delivery struct {
	Auth     string // the Authorization header
	Body     []byte
	Status   int
	Response []byte
	// Records are the body's records, as the gateway decodes them.
	Records []lambdaevents.S3EventRecord
}

// report decodes the gateway's EventReport.
func (d delivery) report(tb testing.TB) controlplane.EventReport {
	tb.Helper()
	var rep controlplane.EventReport
	require.NoError(tb, json.Unmarshal(d.Response, &rep), "%s", d.Response)
	return rep
}

// recorder stands between MinIO and the gateway: it forwards each
// notification unchanged and records it with the answer, so a test can
// wait for a delivery, inspect what MinIO sent and replay it.
type recorder struct {
	gateway string
	hc      *http.Client
	ch      chan delivery
	url     string
	srv     *http.Server
	l       net.Listener

	mu       sync.Mutex
	failures []string // forwards that failed (MinIO retries those), for failure messages
}

// newRecorder serves a recorder forwarding to gateway on a free loopback
// port until the test ends. Its URL is where MinIO's endpoint points.
func newRecorder(tb testing.TB, gateway string) *recorder {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	rec := &recorder{gateway: gateway, hc: &http.Client{Timeout: 10 * time.Second},
		ch: make(chan delivery, 100), url: "http://" + l.Addr().String()}
	rec.serve(l)
	tb.Cleanup(rec.down)
	return rec
}

func (rec *recorder) serve(l net.Listener) {
	rec.l = l
	rec.srv = &http.Server{Handler: rec, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rec.srv.Serve(l) }()
}

// down closes the recorder's port, as if the gateway were down: MinIO's
// connections are refused.
func (rec *recorder) down() { _ = rec.srv.Close() }

// up listens on the same port again.
func (rec *recorder) up(tb testing.TB) {
	tb.Helper()
	var l net.Listener
	require.Eventually(tb, func() bool {
		var err error
		l, err = net.Listen("tcp", rec.l.Addr().String())
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "listen on %s again", rec.l.Addr())
	rec.serve(l)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status, resp, err := post(r.Context(), rec.hc, rec.gateway+r.URL.Path, r.Header.Get("Authorization"), body)
	if err != nil {
		rec.mu.Lock()
		rec.failures = append(rec.failures, time.Now().Format(time.TimeOnly)+" "+err.Error())
		rec.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	d := delivery{Auth: r.Header.Get("Authorization"), Body: body, Status: status, Response: resp}
	var ev lambdaevents.S3Event
	if json.Unmarshal(body, &ev) == nil {
		d.Records = ev.Records
	}
	rec.ch <- d
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(resp)
}

// next waits for the next delivery concerning key (URL-decoded).
func (rec *recorder) next(tb testing.TB, key string) delivery {
	tb.Helper()
	// MinIO replays its queue directory every 3 s; on a machine loaded by
	// a whole test run, deliveries have taken longer than 30 s.
	timeout := time.After(60 * time.Second)
	for {
		select {
		case d := <-rec.ch:
			for _, r := range d.Records {
				if r.S3.Object.URLDecodedKey == key {
					return d
				}
			}
			tb.Logf("skipped a delivery for another key: %s", d.Body)
		case <-timeout:
			rec.mu.Lock()
			failures := strings.Join(rec.failures, "; ")
			rec.mu.Unlock()
			tb.Fatalf("no notification for key %q within 60 s (failed forwards: %s)", key, failures)
		}
	}
}

// post sends body to url with an Authorization header and returns the
// answer.
func post(ctx context.Context, hc *http.Client, url, auth string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

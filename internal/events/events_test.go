package events

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/controlplane"
	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/runfleet/runfleet/workflows"
)

// s3Bundle is a fleet with a gateway, a recorder in front of it and a
// MinIO whose webhook target posts to the recorder, keeping undelivered
// events in a queue directory.
type s3Bundle struct {
	*fleet
	gateway  string
	rec      *recorder
	minio    *testenv.MinIO
	queueDir string
}

func setupS3(t *testing.T) *s3Bundle {
	t.Helper()
	requireServers(t, true)
	f := newFleet(t, controlplane.TokenSpec{})
	gw, _ := f.startGateway(t, time.Second)
	rec := newRecorder(t, gw)
	queueDir := t.TempDir()
	m := testenv.NewMinIOEnv(t, webhookEnv(rec.url+"/v1/events/s3", f.token, queueDir)...)
	return &s3Bundle{fleet: f, gateway: gw, rec: rec, minio: m, queueDir: queueDir}
}

// ingestInput decodes the root task input of job id.
func (b *s3Bundle) ingestInput(t *testing.T, id string) benchtask.Ingest {
	t.Helper()
	var in benchtask.Ingest
	raw := b.rootTask(t, id).Input
	require.NoError(t, json.Unmarshal([]byte(raw), &in), "%s", raw)
	return in
}

// replay posts a captured notification body to the gateway again.
func (b *s3Bundle) replay(t *testing.T, body []byte) controlplane.EventReport {
	t.Helper()
	status, resp, err := post(t.Context(), http.DefaultClient, b.gateway+"/v1/events/s3", "Bearer "+b.token, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", resp)
	return delivery{Response: resp}.report(t)
}

// submitted returns the one job a delivery's report names.
func submitted(t *testing.T, d delivery) controlplane.EventJob {
	t.Helper()
	require.Equal(t, http.StatusOK, d.Status, "%s", d.Response)
	rep := d.report(t)
	require.Len(t, rep.Submitted, 1, "%s", d.Response)
	return rep.Submitted[0]
}

func TestUploadMakesOneJobPerObjectVersionThatARunnerRunsWithTheKey(t *testing.T) {
	t.Parallel()
	b := setupS3(t)
	ctx := t.Context()
	bucket := b.minio.NewBucket(t)
	notifyBucket(t, b.minio, bucket, false)
	b.storageAutomation(t, "ingest", "s3://"+bucket+"/incoming/", "*.tif", `{"tag":"survey"}`)

	// A key a URL must escape: spaces, a '+' and slashes. MinIO sends it
	// query-escaped ("run+7%2B8%2Fscan..."), so a '+' read as a space or
	// left encoded would name another object.
	key := "incoming/run 7+8/scan a+b.tif"
	etag, _ := upload(t, b.minio, bucket, key, "first scan")
	first := b.rec.next(t, key)
	require.Equal(t, "Bearer "+b.token, first.Auth, "MinIO sends its AUTH_TOKEN as a bearer token")
	require.Equal(t, "minio:s3", first.Records[0].EventSource)
	job := submitted(t, first)
	require.True(t, job.Created)

	jobs := b.jobs(t)
	require.Len(t, jobs, 1)
	require.Equal(t, job.JobID, jobs[0].ID)
	require.Equal(t, "ingest "+key, jobs[0].Name)
	require.Equal(t, workflows.JobSubmitted, jobs[0].State, "queued, with no runner yet")
	in := b.ingestInput(t, job.JobID)
	require.Equal(t, bucket, in.Object.Bucket)
	require.Equal(t, key, in.Object.Key, "the root input carries the decoded key")
	require.Equal(t, int64(len("first scan")), in.Object.Size)
	require.Equal(t, etag, in.Object.ETag)
	require.WithinDuration(t, time.Now(), in.Object.EventTime, time.Minute)
	require.Equal(t, "survey", in.Tag, "the automation's prototype input is kept")

	b.startRunner(t)
	j, err := b.wc.Jobs().Wait(ctx, job.JobID, 10*time.Millisecond, nil)
	require.NoError(t, err)
	require.Equal(t, workflows.JobCompleted, j.State)
	require.Equal(t, "object "+bucket+"/"+key+" tag=survey", b.rootTask(t, job.JobID).Display,
		"the runner ran the task with the object's key")

	// The same content again is the same object version (the bucket is
	// not versioned: the ETag tells versions apart): no new job, and a 200
	// so that MinIO does not deliver it again.
	upload(t, b.minio, bucket, key, "first scan")
	again := submitted(t, b.rec.next(t, key))
	require.Equal(t, job.JobID, again.JobID, "a later event time does not make it another request")
	require.False(t, again.Created)
	require.Len(t, b.jobs(t), 1)

	// MinIO (or S3) delivering the first notification once more.
	rep := b.replay(t, first.Body)
	require.Len(t, rep.Submitted, 1)
	require.Equal(t, job.JobID, rep.Submitted[0].JobID)
	require.False(t, rep.Submitted[0].Created)
	require.Len(t, b.jobs(t), 1, "one job per object version, however often it is notified")

	// New content under the key is a new version of the object.
	etag2, _ := upload(t, b.minio, bucket, key, "second scan")
	second := submitted(t, b.rec.next(t, key))
	require.True(t, second.Created)
	require.NotEqual(t, job.JobID, second.JobID)
	require.Equal(t, etag2, b.ingestInput(t, second.JobID).Object.ETag)
	require.Len(t, b.jobs(t), 2)
}

func TestVersionedBucketMakesOneJobPerVersion(t *testing.T) {
	t.Parallel()
	b := setupS3(t)
	bucket := b.minio.NewBucket(t)
	notifyBucket(t, b.minio, bucket, true)
	b.storageAutomation(t, "ingest", "s3://"+bucket, "", "")

	const key = "a b+c/d.tif"
	var ids, versions []string
	var firstBody []byte
	for range 2 {
		_, version := upload(t, b.minio, bucket, key, "same content")
		require.NotEmpty(t, version, "the bucket is versioned")
		d := b.rec.next(t, key)
		if firstBody == nil {
			firstBody = d.Body
		}
		job := submitted(t, d)
		require.True(t, job.Created, "a new version is a new job, even with the same content")
		require.Equal(t, version, b.ingestInput(t, job.JobID).Object.VersionID)
		ids = append(ids, job.JobID)
		versions = append(versions, version)
	}
	require.NotEqual(t, versions[0], versions[1])
	require.NotEqual(t, ids[0], ids[1])

	rep := b.replay(t, firstBody)
	require.Equal(t, ids[0], rep.Submitted[0].JobID)
	require.False(t, rep.Submitted[0].Created)
	require.Len(t, b.jobs(t), 2)

	b.startRunner(t)
	for _, id := range ids {
		j, err := b.wc.Jobs().Wait(t.Context(), id, 10*time.Millisecond, nil)
		require.NoError(t, err)
		require.Equal(t, workflows.JobCompleted, j.State)
		require.Equal(t, "object "+bucket+"/"+key, b.rootTask(t, id).Display)
	}
}

func TestWebhookRefusesAWrongTokenAndIgnoresUnwatchedObjects(t *testing.T) {
	t.Parallel()
	b := setupS3(t)
	watched, unwatched := b.minio.NewBucket(t), b.minio.NewBucket(t)
	notifyBucket(t, b.minio, watched, false)
	notifyBucket(t, b.minio, unwatched, false)
	b.storageAutomation(t, "ingest", "s3://"+watched+"/incoming/", "*.tif", "")

	// An object in a bucket no automation watches: delivered, answered 200,
	// reported as ignored, no job.
	d := b.rec.next(t, uploadKey(t, b, unwatched, "incoming/x.tif"))
	require.Equal(t, http.StatusOK, d.Status, "%s", d.Response)
	rep := d.report(t)
	require.Empty(t, rep.Submitted)
	require.Len(t, rep.Ignored, 1)
	require.Contains(t, rep.Ignored[0], "no storage automation watches this bucket and key")
	// A key the automation's glob does not match: the same.
	d = b.rec.next(t, uploadKey(t, b, watched, "incoming/notes.txt"))
	require.Equal(t, http.StatusOK, d.Status)
	require.Contains(t, string(d.Response), `"ignored"`)
	require.Empty(t, b.jobs(t))

	// A matching object's notification with a wrong token: 401, nothing
	// written to Redis.
	d = b.rec.next(t, uploadKey(t, b, watched, "incoming/scan.tif"))
	require.Len(t, b.jobs(t), 1)
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()
	// A refused request would write new keys (a job, an idempotency key);
	// existing ones may expire meanwhile (rate-limit buckets).
	before, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	body := []byte(strings.ReplaceAll(string(d.Body), "incoming/scan.tif", "incoming/other.tif"))
	for _, auth := range []string{"Bearer rf_" + strings.Repeat("A", 43), "Bearer " + b.token + "x", "", b.token} {
		status, resp, err := post(t.Context(), http.DefaultClient, b.gateway+"/v1/events/s3", auth, body)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, status, "Authorization %q: %s", auth, resp)
		var p struct{ Type, Title string }
		require.NoError(t, json.Unmarshal(resp, &p))
		require.Contains(t, p.Type, "urn:runfleet:problem:")
	}
	after, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	require.Subset(t, before, after, "a refused request writes nothing")
	require.Len(t, b.jobs(t), 1)
}

// uploadKey uploads a small object and returns its key.
func uploadKey(t *testing.T, b *s3Bundle, bucket, key string) string {
	t.Helper()
	upload(t, b.minio, bucket, key, "content of "+key)
	return key
}

func TestMinIOKeepsEventsWhileTheGatewayIsDown(t *testing.T) {
	t.Parallel()
	b := setupS3(t)
	bucket := b.minio.NewBucket(t)
	notifyBucket(t, b.minio, bucket, false)
	b.storageAutomation(t, "ingest", "s3://"+bucket, "", "")

	b.rec.down()
	const key = "while down.tif"
	upload(t, b.minio, bucket, key, "x")
	// MinIO keeps the event in its queue directory and retries every 3 s.
	// Whether it logs a failed delivery depends on whether it has marked
	// the target offline yet, so the test waits for the queued event and
	// then for more than one retry interval, during which it must stay
	// queued and submit nothing.
	require.Eventually(t, func() bool { return queuedEvents(t, b.queueDir) == 1 }, 30*time.Second, 50*time.Millisecond,
		"MinIO queues the event while the gateway is down; %s", b.minio.LogTail())
	time.Sleep(4 * time.Second)
	require.Equal(t, 1, queuedEvents(t, b.queueDir), "the event stays queued while the gateway is down")
	require.Empty(t, b.jobs(t))

	b.rec.up(t)
	job := submitted(t, b.rec.next(t, key))
	require.True(t, job.Created)
	require.Len(t, b.jobs(t), 1)
	require.Eventually(t, func() bool { return queuedEvents(t, b.queueDir) == 0 }, 10*time.Second, 20*time.Millisecond,
		"delivered events leave the queue directory")
}

// queuedEvents counts the events waiting in MinIO's queue directory.
func queuedEvents(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	require.NoError(t, err)
	return n
}

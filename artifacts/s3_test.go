package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/runfleet/runfleet/internal/testenv"
	"github.com/stretchr/testify/require"
)

// newS3Store opens an S3Store on m with its root credentials; the endpoint
// is m unless opts names one (a fault proxy).
func newS3Store(t *testing.T, m *testenv.MinIO, opts S3Options) *S3Store {
	t.Helper()
	if opts.Endpoint == "" {
		opts.Endpoint = m.Endpoint()
	}
	opts.AccessKeyID, opts.SecretAccessKey = m.AccessKey, m.SecretKey
	s, err := NewS3Store(t.Context(), opts)
	require.NoError(t, err)
	return s
}

// randomBytes is n bytes that do not compress, made fast.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func readAll(t *testing.T, s Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

// onlyReader hides every method but Read, as a network stream would.
type onlyReader struct{ io.Reader }

func TestS3StorePrefix(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := testenv.NewMinIO(t)
	bucket := m.NewBucket(t)
	root := newS3Store(t, m, S3Options{Bucket: bucket})
	team := newS3Store(t, m, S3Options{Bucket: bucket, Prefix: "team/a/"})
	require.Equal(t, "s3://"+bucket+"/team/a/", team.String())

	require.NoError(t, team.Put(ctx, "releases/x", strings.NewReader("x")))
	require.NoError(t, root.Put(ctx, "team/ab", strings.NewReader("outside")))
	_, err := m.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("team/a/releases/x")})
	require.NoError(t, err, "the prefix is joined to the key")
	keys, err := root.List(ctx, "team/")
	require.NoError(t, err)
	require.Equal(t, []string{"team/a/releases/x", "team/ab"}, keys)
	keys, err = team.List(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"releases/x"}, keys)
	require.Equal(t, "x", string(readAll(t, root, "team/a/releases/x")))
}

func TestS3StoreFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := testenv.NewMinIO(t)
	bucket := m.NewBucket(t)
	direct := newS3Store(t, m, S3Options{Bucket: bucket})
	p := testenv.NewFaultProxy(t, m.Endpoint())
	s := newS3Store(t, m, S3Options{Bucket: bucket, Endpoint: p.URL})
	small := randomBytes(64 << 10)
	big := randomBytes(1 << 20)
	require.NoError(t, direct.Put(ctx, "big", bytes.NewReader(big)))

	// every runs each operation once with faults set by inject before it,
	// and checks all of them were used.
	every := func(t *testing.T, inject func()) {
		t.Helper()
		inject()
		require.NoError(t, s.Put(ctx, "small", bytes.NewReader(small)))
		inject()
		require.Equal(t, small, readAll(t, s, "small"))
		inject()
		ok, err := s.Exists(ctx, "small")
		require.NoError(t, err)
		require.True(t, ok)
		inject()
		keys, err := s.List(ctx, "")
		require.NoError(t, err)
		require.Equal(t, []string{"big", "small"}, keys)
		require.Zero(t, p.Pending())
	}
	t.Run("5xx bursts", func(t *testing.T) {
		status := []int{500, 502, 503, 504}
		i := 0
		every(t, func() { p.FailNext(3, status[i%4]); i++ })
	})
	t.Run("connection resets", func(t *testing.T) {
		every(t, func() { p.ResetNext(3) })
	})
	t.Run("truncated responses", func(t *testing.T) {
		// Cuts hit responses with a body: the GET body and the List XML.
		p.CutNext(1, 10)
		keys, err := s.List(ctx, "")
		require.NoError(t, err)
		require.Equal(t, []string{"big", "small"}, keys)
		require.Zero(t, p.Pending())
	})
	t.Run("get body cut mid-way", func(t *testing.T) {
		before := p.Requests()
		p.CutNext(3, 100<<10)
		require.Equal(t, big, readAll(t, s, "big"))
		require.Zero(t, p.Pending())
		require.EqualValues(t, 4, p.Requests()-before, "one GET and three ranged resumes")
	})
	t.Run("resume answered without the range", func(t *testing.T) {
		p.CutNext(1, 100<<10)
		p.Inject(testenv.Fault{Kind: testenv.FaultDropRange})
		rc, err := s.Get(ctx, "big")
		require.NoError(t, err)
		defer rc.Close()
		_, err = io.ReadAll(rc)
		require.ErrorContains(t, err, "resuming at byte 102400, the server answered with range \"\" instead of \"bytes 102400-1048575/1048576\"")
		require.Zero(t, p.Pending())
	})
	t.Run("unreachable", func(t *testing.T) {
		gone := newS3Store(t, m, S3Options{Bucket: bucket, Endpoint: "http://127.0.0.1:1", MaxAttempts: 1})
		_, err := gone.CreateBucket(ctx)
		require.ErrorContains(t, err, "check bucket")
		_, err = gone.Exists(ctx, "small")
		require.Error(t, err)
	})
	t.Run("slow body", func(t *testing.T) {
		p.Throttle(512 << 10)
		defer p.Throttle(0)
		start := time.Now()
		require.Equal(t, small, readAll(t, s, "small"))
		require.Greater(t, time.Since(start), 80*time.Millisecond)

		// The deadline ends the read mid-body (about 2 s at this rate); on
		// a loaded machine it may already end the request itself.
		tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		rc, err := s.Get(tctx, "big")
		if err == nil {
			defer rc.Close()
			_, err = io.ReadAll(rc)
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("object replaced while read", func(t *testing.T) {
		require.NoError(t, direct.Put(ctx, "moving", bytes.NewReader(big)))
		p.CutNext(1, 64<<10)
		rc, err := s.Get(ctx, "moving")
		require.NoError(t, err)
		defer rc.Close()
		_, err = io.ReadFull(rc, make([]byte, 32<<10))
		require.NoError(t, err)
		require.NoError(t, direct.Put(ctx, "moving", bytes.NewReader(small)))
		_, err = io.ReadAll(rc)
		require.ErrorContains(t, err, "s3://"+bucket+"/moving: the object was replaced while being read")
	})
	t.Run("gives up", func(t *testing.T) {
		few := newS3Store(t, m, S3Options{Bucket: bucket, Endpoint: p.URL, MaxAttempts: 3})
		p.FailNext(3, http.StatusInternalServerError)
		err := few.Put(ctx, "k", strings.NewReader("x"))
		require.ErrorContains(t, err, "put s3://"+bucket+"/k: ")
		require.ErrorContains(t, err, "StatusCode: 500")
		require.Zero(t, p.Pending())

		// More resets than attempts: net/http itself retries a GET whose
		// reused connection resets, so the exact count is not ours.
		p.ResetNext(10)
		_, err = few.Get(ctx, "small")
		require.ErrorContains(t, err, "get s3://"+bucket+"/small: ")
		p.Clear()

		// Three cuts in a row at the same offset: the first GET and two
		// resumes that read nothing.
		p.Inject(testenv.Fault{Kind: testenv.FaultCut, Count: 3, After: 0})
		rc, err := few.Get(ctx, "small")
		require.NoError(t, err)
		defer rc.Close()
		_, err = io.ReadAll(rc)
		require.ErrorContains(t, err, "get s3://"+bucket+"/small: read at byte 0: ")
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		require.Zero(t, p.Pending())
	})
}

func TestS3StoreMultipart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := testenv.NewMinIO(t)
	bucket := m.NewBucket(t)
	p := testenv.NewFaultProxy(t, m.Endpoint())
	s := newS3Store(t, m, S3Options{Bucket: bucket, Endpoint: p.URL})
	data := randomBytes(20 << 20) // above the 16 MiB threshold: 8+8+4 MiB parts

	// UploadPart is a PUT: two of them fail and are retried.
	p.Inject(testenv.Fault{Kind: testenv.FaultStatus, Method: http.MethodPut, Count: 2, Status: 500})
	require.NoError(t, s.Put(ctx, "big", onlyReader{bytes.NewReader(data)}))
	require.Zero(t, p.Pending())
	head, err := m.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("big")})
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(aws.ToString(head.ETag), `-3"`), "multipart ETag: %s", aws.ToString(head.ETag))
	require.EqualValues(t, len(data), aws.ToInt64(head.ContentLength))

	p.CutNext(2, 5<<20)
	rc, err := s.Get(ctx, "big")
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Equal(t, sha256.Sum256(data), [32]byte(h.Sum(nil)))

	t.Run("canceled mid-way stores nothing", func(t *testing.T) {
		before := p.Requests()
		cctx, cancel := context.WithCancel(ctx)
		// Two 8 MiB parts are sent before the body fails.
		r := io.MultiReader(bytes.NewReader(data[:18<<20]), readerFunc(func([]byte) (int, error) {
			cancel()
			return 0, cctx.Err()
		}))
		require.ErrorIs(t, s.Put(cctx, "canceled", r), context.Canceled)
		require.GreaterOrEqual(t, p.Requests()-before, int64(2), "a multipart upload was created and aborted")
		ok, err := s.Exists(ctx, "canceled")
		require.NoError(t, err)
		require.False(t, ok)
		ups, err := m.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: aws.String("canceled")})
		require.NoError(t, err)
		require.Empty(t, ups.Uploads, "the upload was aborted")
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func TestS3StoreMissingBucket(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := testenv.NewMinIO(t)
	s := newS3Store(t, m, S3Options{Bucket: "no-such-bucket", Prefix: "p"})
	check := func(err error, op string) {
		t.Helper()
		require.ErrorIs(t, err, ErrBucketNotFound)
		require.ErrorContains(t, err, op+" s3://no-such-bucket/p/")
		require.ErrorContains(t, err, `bucket does not exist (bucket "no-such-bucket", endpoint `+m.Endpoint()+")")
	}
	check(s.Put(ctx, "k", strings.NewReader("x")), "put")
	_, err := s.Get(ctx, "k")
	check(err, "get")
	_, err = s.Exists(ctx, "k")
	check(err, "exists")
	_, err = s.List(ctx, "")
	check(err, "list")
}

// TestS3StoreEndpointFromEnv checks the SDK's own configuration is used:
// AWS_ENDPOINT_URL_S3 (then path-style), credentials from the environment
// and the us-east-1 default region. It sets variables, so it is not parallel.
func TestS3StoreEndpointFromEnv(t *testing.T) {
	m := testenv.NewMinIO(t)
	bucket := m.NewBucket(t)
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_S3":         m.Endpoint(),
		"AWS_ENDPOINT_URL":            "",
		"AWS_ACCESS_KEY_ID":           m.AccessKey,
		"AWS_SECRET_ACCESS_KEY":       m.SecretKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
	} {
		t.Setenv(k, v)
	}
	st, err := OpenStore("s3://" + bucket + "/env")
	require.NoError(t, err)
	s := st.(*S3Store)
	o := s.client.Options()
	require.Equal(t, m.Endpoint(), aws.ToString(o.BaseEndpoint))
	require.True(t, o.UsePathStyle)
	require.Equal(t, "us-east-1", o.Region)
	require.NoError(t, s.Put(t.Context(), "k", strings.NewReader("v")))
	require.Equal(t, "v", string(readAll(t, s, "k")))
}

func TestOpenStoreS3(t *testing.T) {
	t.Parallel()
	for rawURL, want := range map[string]struct {
		str, endpoint, region string
		pathStyle             bool
	}{
		"s3://bucket":                     {str: "s3://bucket/"},
		"s3://bucket/":                    {str: "s3://bucket/"},
		"s3://my.bucket-1/releases/prod/": {str: "s3://my.bucket-1/releases/prod/"},
		"s3://bkt/p?region=eu-west-3":     {str: "s3://bkt/p/", region: "eu-west-3"},
		"s3://bkt/p?path_style=true":      {str: "s3://bkt/p/", pathStyle: true},
		"s3://bkt/p?path_style=false":     {str: "s3://bkt/p/"},
		"s3://bkt?endpoint=http://127.0.0.1:9000&region=eu-west-1": {
			str: "s3://bkt/", endpoint: "http://127.0.0.1:9000", region: "eu-west-1", pathStyle: true},
	} {
		st, err := OpenStore(rawURL)
		require.NoError(t, err, rawURL)
		s := st.(*S3Store)
		require.Equal(t, want.str, s.String(), rawURL)
		o := s.client.Options()
		if want.endpoint != "" {
			require.Equal(t, want.endpoint, aws.ToString(o.BaseEndpoint), rawURL)
			require.Equal(t, want.endpoint, s.endpoint, rawURL)
		}
		if want.region != "" {
			require.Equal(t, want.region, o.Region, rawURL)
		}
		if want.pathStyle {
			require.True(t, o.UsePathStyle, rawURL)
		}
	}
	for rawURL, want := range map[string]string{
		"s3://":                           "missing bucket",
		"s3:///releases":                  "missing bucket",
		"s3:bucket":                       "looks like s3://bucket/optional/prefix",
		"s3://key:secret@bucket/x":        "takes no user info",
		"s3://bucket:9000/x":              "give the server as ?endpoint=http://host:port",
		"s3://Bucket_Name/x":              `bucket "Bucket_Name" is not a valid S3 bucket name`,
		"s3://ab":                         `bucket "ab" is not a valid S3 bucket name`,
		"s3://bucket/a//b":                `prefix "a//b" contains an empty component`,
		"s3://bucket/a/../b":              `prefix "a/../b" contains a ".." component`,
		"s3://bucket//a":                  `prefix "/a" is absolute`,
		"s3://bucket/x?endpoint=host:90":  `endpoint "host:90" is not an http:// or https:// base URL`,
		"s3://bucket/x?path_style=maybe":  `path_style="maybe" is not true or false`,
		"s3://bucket/x?foo=1":             `unknown query parameter "foo"`,
		"s3://bucket/x?region=a&region=b": `query parameter "region" is given 2 times`,
		"s3://bucket/x#frag":              "takes no fragment",
	} {
		st, err := OpenStore(rawURL)
		require.ErrorContains(t, err, want, rawURL)
		require.Nil(t, st, rawURL)
	}
}

func TestNewS3StoreOptions(t *testing.T) {
	t.Parallel()
	for want, o := range map[string]S3Options{
		"missing bucket name":            {},
		"give both an access key id":     {Bucket: "bkt", AccessKeyID: "a"},
		"below S3's minimum of 5 MiB":    {Bucket: "bkt", PartSize: 1 << 20},
		"max attempts -1 is negative":    {Bucket: "bkt", MaxAttempts: -1},
		"multipart threshold -1 is not":  {Bucket: "bkt", MultipartThreshold: -1},
		"open s3 store s3://bkt/a/../b:": {Bucket: "bkt", Prefix: "a/../b"},
	} {
		_, err := NewS3Store(t.Context(), o)
		require.ErrorContains(t, err, want)
	}
}

func TestOpenStoreHidesCredentials(t *testing.T) {
	for _, raw := range []string{
		"s3://AKIAXX:SECRETSECRET@bucket/x",
		"s3://bucket/x?endpoint=http://user:SECRETSECRET@127.0.0.1:9000",
	} {
		_, err := OpenStore(raw)
		require.Error(t, err, raw)
		require.NotContains(t, err.Error(), "SECRETSECRET", raw)
	}
}

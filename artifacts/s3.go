package artifacts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	// transfermanager, not feature/s3/manager: AWS deprecated manager in
	// its favour. It is v0.x, but only its UploadObject is used (one PUT
	// below the threshold, else a multipart upload aborted on failure),
	// which behaves as manager's Uploader did.
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

// ErrBucketNotFound is wrapped by S3Store methods when the bucket does not
// exist.
var ErrBucketNotFound = errors.New("bucket does not exist")

const (
	defaultS3Region             = "us-east-1"
	defaultS3MaxAttempts        = 8
	defaultS3PartSize           = 8 << 20
	defaultS3MultipartThreshold = 16 << 20
	minS3PartSize               = 5 << 20 // S3's minimum for all parts but the last
	maxS3PutSize                = 5 << 30 // S3's limit for a single PUT
	// s3AbortTimeout bounds aborting a failed multipart upload, done on a
	// fresh context so a canceled Put leaves no parts behind.
	s3AbortTimeout = 30 * time.Second
)

// bucketName is S3's rule for bucket names (legacy us-east-1 names with
// capitals or underscores are not supported).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// S3Options configures an S3Store. Only Bucket is required.
type S3Options struct {
	// Bucket is the name of an existing bucket.
	Bucket string
	// Prefix is joined to every key with a "/": with Prefix "team/a", key
	// "releases/x" is object "team/a/releases/x". Default: none.
	Prefix string
	// Endpoint is the base URL of the S3 API, such as
	// "http://127.0.0.1:9000" for MinIO. Default: what the AWS SDK is
	// configured with ($AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL, then
	// endpoint_url in the shared config file), else AWS S3.
	Endpoint string
	// PathStyle addresses objects as <endpoint>/<bucket>/<key> rather than
	// <bucket>.<endpoint>/<key>. It is always on when a custom endpoint is
	// configured (here or by the variables above), as MinIO and LocalStack
	// expect. Default: false.
	PathStyle bool
	// Region is the bucket's region. Default: $AWS_REGION or the shared
	// config's region, else "us-east-1".
	Region string
	// AccessKeyID and SecretAccessKey are static credentials, both or
	// neither. Default: the standard AWS chain (environment, shared files,
	// SSO, web identity, container and EC2 instance roles).
	AccessKeyID     string
	SecretAccessKey string
	// MaxAttempts is how often one request is tried when it fails
	// transiently (5xx, throttling, connection resets, timeouts, truncated
	// responses), with exponential backoff and jitter in between; a Get
	// whose body breaks resumes as often between reads that make progress.
	// Default: $AWS_MAX_ATTEMPTS, else 8.
	MaxAttempts int
	// PartSize is the part size of multipart uploads, at least 5 MiB.
	// Default: 8 MiB.
	PartSize int64
	// MultipartThreshold is the body size from which Put uploads in parts;
	// smaller bodies go in one PUT. At most 5 GiB. Default: 16 MiB.
	MultipartThreshold int64
	// Logger receives the AWS SDK's diagnostics (such as skipped checksum
	// validations) at debug level, with their SDK level as "sdk_level".
	// Default: discarded (the SDK would print them to stderr).
	Logger *slog.Logger
}

func (o *S3Options) validate() error {
	if o.Bucket == "" {
		return errors.New("missing bucket name")
	}
	if !bucketName.MatchString(o.Bucket) {
		return fmt.Errorf("bucket %q is not a valid S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)", o.Bucket)
	}
	if o.Prefix != "" {
		if err := checkEntryPath(o.Prefix); err != nil {
			return fmt.Errorf("prefix %q %v", o.Prefix, err)
		}
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			shown := o.Endpoint
			if err == nil {
				shown = u.Redacted()
			}
			return fmt.Errorf("endpoint %q is not an http:// or https:// base URL without credentials, such as http://127.0.0.1:9000", shown)
		}
	}
	if (o.AccessKeyID == "") != (o.SecretAccessKey == "") {
		return errors.New("give both an access key id and a secret access key, or neither (to use the AWS credential chain)")
	}
	switch {
	case o.MaxAttempts < 0:
		return fmt.Errorf("max attempts %d is negative", o.MaxAttempts)
	case o.PartSize != 0 && o.PartSize < minS3PartSize:
		return fmt.Errorf("part size %d is below S3's minimum of 5 MiB", o.PartSize)
	case o.MultipartThreshold < 0 || o.MultipartThreshold > maxS3PutSize:
		return fmt.Errorf("multipart threshold %d is not between 0 and 5 GiB", o.MultipartThreshold)
	}
	return nil
}

// S3Store is a Store in an S3 bucket (AWS S3, MinIO, LocalStack or any S3
// API): key k is object <prefix>/<k>. A Put is atomic, as S3 writes are.
type S3Store struct {
	bucket   string
	prefix   string // "" or ending in "/"
	endpoint string // for error messages
	region   string
	client   *s3.Client
	uploader *transfermanager.Client
	retryer  aws.Retryer
}

// NewS3Store returns an S3Store for opts. It makes no request: a missing
// bucket or bad credentials show in the first operation's error.
func NewS3Store(ctx context.Context, opts S3Options) (*S3Store, error) {
	opts.Prefix = strings.TrimSuffix(opts.Prefix, "/")
	name := "s3://" + opts.Bucket + "/" + opts.Prefix
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("open s3 store %s: %w", name, err)
	}
	load := []func(*config.LoadOptions) error{config.WithLogger(sdkLogger(opts.Logger))}
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	if opts.AccessKeyID != "" {
		load = append(load, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("open s3 store %s: load AWS config: %w", name, err)
	}
	if cfg.Region == "" {
		cfg.Region = defaultS3Region
	}
	attempts := opts.MaxAttempts
	if attempts == 0 {
		attempts = cfg.RetryMaxAttempts
	}
	if attempts == 0 {
		attempts = defaultS3MaxAttempts
	}
	s := &S3Store{
		bucket: opts.Bucket,
		retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.Retryables = append(slices.Clone(o.Retryables), retryTruncated{})
		}),
	}
	if opts.Prefix != "" {
		s.prefix = opts.Prefix + "/"
	}
	s.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Retryer = s.retryer
		o.RetryMaxAttempts = 0 // attempts is in s.retryer already
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		// o.BaseEndpoint also holds an endpoint from the SDK's
		// configuration (AWS_ENDPOINT_URL_S3 and the like) here.
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
			s.endpoint = *o.BaseEndpoint
		} else {
			s.endpoint = "AWS S3 in " + o.Region
		}
		s.region = o.Region
		o.UsePathStyle = o.UsePathStyle || opts.PathStyle
	})
	s.uploader = transfermanager.New(s.client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cmp.Or(opts.PartSize, defaultS3PartSize)
		o.MultipartUploadThreshold = cmp.Or(opts.MultipartThreshold, defaultS3MultipartThreshold)
		o.FailTimeout = s3AbortTimeout
	})
	return s, nil
}

// sdkLogger adapts l to the SDK's logger; nil discards.
func sdkLogger(l *slog.Logger) logging.Logger {
	if l == nil {
		return logging.Nop{}
	}
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		l.Debug(fmt.Sprintf(format, v...), slog.String("sdk_level", string(c)))
	})
}

// retryTruncated retries responses cut short (a truncated XML body), which
// the SDK's default checks do not cover.
type retryTruncated struct{}

func (retryTruncated) IsErrorRetryable(err error) aws.Ternary {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// parseS3URL reads s3://bucket/optional/prefix?endpoint=URL&region=R&path_style=true.
func parseS3URL(u *url.URL) (S3Options, error) {
	var o S3Options
	switch {
	case u.Opaque != "":
		return o, errors.New("an s3 URL looks like s3://bucket/optional/prefix")
	case u.User != nil:
		return o, errors.New("an s3 URL takes no user info; credentials come from the AWS chain (AWS_ACCESS_KEY_ID, profiles, roles)")
	case u.Port() != "":
		return o, errors.New("an s3 URL names a bucket, not a host:port; give the server as ?endpoint=http://host:port")
	case u.Host == "":
		return o, errors.New("missing bucket: use s3://bucket/optional/prefix")
	case u.Fragment != "":
		return o, errors.New("an s3 URL takes no fragment")
	}
	o.Bucket = u.Host
	o.Prefix = strings.TrimPrefix(u.Path, "/")
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return o, fmt.Errorf("bad query: %w", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return o, fmt.Errorf("query parameter %q is given %d times", k, len(v))
		}
		switch k {
		case "endpoint":
			o.Endpoint = v[0]
		case "region":
			o.Region = v[0]
		case "path_style":
			if o.PathStyle, err = strconv.ParseBool(v[0]); err != nil {
				return o, fmt.Errorf("path_style=%q is not true or false", v[0])
			}
		default:
			return o, fmt.Errorf("unknown query parameter %q (known: endpoint, region, path_style)", k)
		}
	}
	return o, nil
}

// String is the store's URL, s3://bucket/prefix/.
func (s *S3Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3Store) object(key string) string { return s.prefix + key }

// fail wraps err from an operation on key, mapping S3's error codes to the
// package's sentinels and naming the bucket and key.
func (s *S3Store) fail(op, key string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchBucket":
			return s.noBucket(op, key)
		case "NoSuchKey":
			return fmt.Errorf("%s %s%s: %w", op, s, key, ErrNotFound)
		}
	}
	return fmt.Errorf("%s %s%s: %w", op, s, key, err)
}

func (s *S3Store) noBucket(op, key string) error {
	return fmt.Errorf("%s %s%s: %w (bucket %q, endpoint %s)", op, s, key, ErrBucketNotFound, s.bucket, s.endpoint)
}

// bucketMissing reports whether S3 says the bucket does not exist. An
// answer that is neither yes nor no (unreachable endpoint, bad credentials)
// is an error.
func (s *S3Store) bucketMissing(ctx context.Context) (bool, error) {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	var nf *types.NotFound
	var ae smithy.APIError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &nf) || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket"):
		return true, nil
	default:
		return false, fmt.Errorf("check bucket %q at %s: %w", s.bucket, s.endpoint, err)
	}
}

// Put implements Store. Bodies from MultipartThreshold on go up as a
// multipart upload, aborted if any part fails; the object appears only when
// the upload completes.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s%s: %w", s, key, err)
	}
	_, err := s.uploader.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.object(key)),
		Body:   ctxReader{ctx, r},
	})
	if err != nil {
		return s.fail("put", key, err)
	}
	return nil
}

// Get implements Store. The object is streamed, not buffered; if its
// connection breaks mid-body, reading resumes with a ranged GET of the same
// object version (ETag), so a concurrent overwrite is an error, never a mix.
func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.object(key))})
	if err != nil {
		return nil, s.fail("get", key, err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return &s3Reader{ctx: ctx, s: s, key: key, etag: out.ETag, size: size, body: out.Body}, nil
}

// Exists implements Store.
func (s *S3Store) Exists(ctx context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, fmt.Errorf("exists: %w", err)
	}
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.object(key))})
	if err == nil {
		return true, nil
	}
	// A HEAD reply has no body, so a missing bucket is a plain 404 too.
	var nf *types.NotFound
	if errors.As(err, &nf) {
		missing, berr := s.bucketMissing(ctx)
		if berr != nil {
			return false, fmt.Errorf("exists %s%s: %w", s, key, berr)
		}
		if missing {
			return false, s.noBucket("exists", key)
		}
		return false, nil
	}
	return false, s.fail("exists", key, err)
}

// List implements Store.
func (s *S3Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkPrefix("list", prefix); err != nil {
		return nil, err
	}
	var keys []string
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket,
		Prefix: aws.String(s.object(prefix)),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.fail("list", prefix, err)
		}
		if aws.ToBool(page.IsTruncated) && aws.ToString(page.NextContinuationToken) == "" {
			// The paginator would stop here silently, with a partial list.
			return nil, fmt.Errorf("list %s%s: the server cut the listing short without a continuation token", s, prefix)
		}
		for _, o := range page.Contents {
			// Objects written by other tools may not be valid keys ("a//b",
			// "dir/" markers); they are not part of this store.
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if checkKey(key) == nil {
				keys = append(keys, key)
			}
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete implements Store. S3 answers a delete of a missing key with
// success, so no error means no object is left.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.object(key))})
	if err != nil {
		return s.fail("delete", key, err)
	}
	return nil
}

// s3DeleteBatch is S3's limit of keys per DeleteObjects request.
const s3DeleteBatch = 1000

// DeletePrefix implements Store: a listing, then batched DeleteObjects
// requests of up to 1,000 keys, each retried as any request is.
func (s *S3Store) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if err := checkPrefix("delete prefix", prefix); err != nil {
		return 0, err
	}
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return 0, fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	deleted := 0
	for batch := range slices.Chunk(keys, s3DeleteBatch) {
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(s.object(k))}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket,
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return deleted, s.fail("delete prefix", prefix, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return deleted + len(batch) - len(out.Errors), fmt.Errorf("delete prefix %s%s: %d of %d objects not deleted, first %q: %s: %s",
				s, prefix, len(out.Errors), len(batch), aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		deleted += len(batch)
	}
	return deleted, nil
}

// s3Reader is the body of an S3 object that survives broken connections:
// after a transient read error it re-issues a ranged GET from the offset
// reached, pinned to the ETag. It gives up after MaxAttempts-1 resumes in a
// row that read nothing. (transfermanager's GetObject does not retry a
// broken body, and its DownloadObject needs a file per Get.)
type s3Reader struct {
	ctx   context.Context
	s     *S3Store
	key   string
	etag  *string
	size  int64 // -1: unknown
	body  io.ReadCloser
	off   int64
	fails int   // resumes since the last byte read
	err   error // the read error that closed body
}

func (r *s3Reader) Read(p []byte) (int, error) {
	for {
		if r.body == nil {
			if err := r.resume(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.off += int64(n)
		if r.size >= 0 && r.off > r.size {
			return 0, fmt.Errorf("get %s%s: the server sent more than the object's %d bytes", r.s, r.key, r.size)
		}
		if n > 0 {
			r.fails = 0
		}
		if err == nil || (err == io.EOF && (r.size < 0 || r.off == r.size)) {
			return n, err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		_ = r.body.Close()
		r.body, r.err = nil, err
		if n > 0 {
			return n, nil
		}
	}
}

func (r *s3Reader) resume() error {
	name := r.s.String() + r.key
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("get %s: %w", name, err)
	}
	// Errors at the very end (a checksum mismatch) or that are not
	// transient are the caller's to see, not to paper over.
	// Without an ETag or a size a resumed read could not be tied to the
	// same object version, or checked to end where it should.
	if r.off == r.size || r.etag == nil || r.size < 0 || !r.s.retryer.IsErrorRetryable(r.err) ||
		r.fails+1 >= r.s.retryer.MaxAttempts() {
		return fmt.Errorf("get %s: read at byte %d: %w", name, r.off, r.err)
	}
	r.fails++
	delay, err := r.s.retryer.RetryDelay(r.fails, r.err)
	if err != nil {
		return fmt.Errorf("get %s: read at byte %d: %w", name, r.off, r.err)
	}
	t := time.NewTimer(delay)
	select {
	case <-r.ctx.Done():
		t.Stop()
		return fmt.Errorf("get %s: %w", name, r.ctx.Err())
	case <-t.C:
	}
	out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
		Bucket:  &r.s.bucket,
		Key:     aws.String(r.s.object(r.key)),
		Range:   aws.String("bytes=" + strconv.FormatInt(r.off, 10) + "-"),
		IfMatch: r.etag,
	})
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return fmt.Errorf("get %s: the object was replaced while being read (at byte %d)", name, r.off)
	}
	if err != nil {
		return r.s.fail("get", r.key, err)
	}
	// Only the requested range, of the object as first read, may continue
	// the body: a server that ignored the Range would splice in its start.
	want := fmt.Sprintf("bytes %d-%d/%d", r.off, r.size-1, r.size)
	if got := aws.ToString(out.ContentRange); got != want {
		_ = out.Body.Close()
		return fmt.Errorf("get %s: resuming at byte %d, the server answered with range %q instead of %q", name, r.off, got, want)
	}
	r.body = out.Body
	return nil
}

func (r *s3Reader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

// CreateBucket creates the store's bucket unless it exists already and is
// this account's. It returns whether it created it.
func (s *S3Store) CreateBucket(ctx context.Context) (bool, error) {
	missing, err := s.bucketMissing(ctx)
	if err != nil || !missing {
		return false, err
	}
	in := &s3.CreateBucketInput{Bucket: &s.bucket}
	// AWS wants the region named for any region but us-east-1.
	if s.region != "" && s.region != defaultS3Region {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.region)}
	}
	_, err = s.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create bucket %q at %s: %w", s.bucket, s.endpoint, err)
	}
	return true, nil
}

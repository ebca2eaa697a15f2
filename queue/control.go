package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Control-plane records: API tokens, idempotency keys, automations and job
// notifications. Their formats belong to package controlplane; this file
// only knows where they live.
//
// The records that change together share the hash tag {cp}, so their
// multi-key steps stay on one Redis Cluster slot.
//
//	rf:{cp}:tokens              hash SHA-256(token) hex -> token JSON
//	rf:{cp}:tokennames          hash token name -> SHA-256(token) hex
//	rf:ratelimit:<token id>     hash: token bucket (tokens, ts), expires when full
//	rf:idem:<SHA-256(key)>      string "<job id> <request fingerprint>", with a TTL
//	rf:{cp}:automations         hash automation id -> automation JSON
//	rf:{cp}:automationnames     hash automation name -> id
//	rf:{cp}:crontick            hash automation id -> last fired tick (unix ms)
//	rf:notify                   sorted set job id -> when to look at it next (unix ms)
//	rf:notify:secret            the HMAC key job notifications are signed with
//	rf:{j:<id>}:nlock           a deliverer's short lease on one job's notification
const (
	keyTokens          = "rf:{cp}:tokens"
	keyTokenNames      = "rf:{cp}:tokennames"
	keyAutomations     = "rf:{cp}:automations"
	keyAutomationNames = "rf:{cp}:automationnames"
	keyCronTicks       = "rf:{cp}:crontick"
	keyNotify          = "rf:notify"
	keyNotifySecret    = "rf:notify:secret"
)

// putNamed stores record under id in records and claims name -> id in
// names, atomically; it reports false when the name is taken.
func (q *Queue) putNamed(ctx context.Context, records, names, name, id string, record []byte) (bool, error) {
	return q.rdb.FCall(ctx, "rf_put_named", []string{names, records}, name, id, record).Bool()
}

// NotifyRecheck is how often a deliverer looks at a job with a
// notification URL that has not finished: a finish is noticed (and sent)
// within about this long. Finishing cannot reach the index itself: it lives
// under another hash tag.
const NotifyRecheck = 5 * time.Second

// ErrExists is returned when a named record (token, automation) already
// exists under that name.
var ErrExists = errors.New("already exists")

// ErrIdempotencyConflict means an idempotency key was used before with a
// different request.
var ErrIdempotencyConflict = errors.New("idempotency key was already used with a different request")

// ---- tokens ----

// PutToken stores a new token record under the hash of its secret, refusing
// a name that is taken.
func (q *Queue) PutToken(ctx context.Context, name, hash string, record []byte) error {
	ok, err := q.putNamed(ctx, keyTokens, keyTokenNames, name, hash, record)
	if err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	if !ok {
		return fmt.Errorf("token %q: %w", name, ErrExists)
	}
	return nil
}

// TokenByHash returns the record of the token whose SHA-256 is hash, or nil.
func (q *Queue) TokenByHash(ctx context.Context, hash string) ([]byte, error) {
	b, err := q.rdb.HGet(ctx, keyTokens, hash).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	return b, nil
}

// Tokens returns every token record by the hash of its secret.
func (q *Queue) Tokens(ctx context.Context) (map[string][]byte, error) {
	m, err := q.rdb.HGetAll(ctx, keyTokens).Result()
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// DeleteToken removes a token and its name.
func (q *Queue) DeleteToken(ctx context.Context, name, hash string) error {
	pipe := q.rdb.TxPipeline()
	pipe.HDel(ctx, keyTokens, hash)
	pipe.HDel(ctx, keyTokenNames, name)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// TakeRequest takes one request from the token bucket of bucket (a token
// id). It returns whether the request may go ahead and, if not, how long
// until one may.
func (q *Queue) TakeRequest(ctx context.Context, bucket string, rate float64, burst int) (bool, time.Duration, error) {
	res, err := q.rdb.FCall(ctx, "rf_take", []string{"rf:ratelimit:" + bucket},
		strconv.FormatFloat(rate, 'f', -1, 64), burst, nowMS()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("rate limit: unexpected reply %v", res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

// ---- idempotency ----

// ReserveIdempotencyKey records that key will create job jobID, for ttl. If
// the key was reserved before with the same fingerprint it returns that job
// id instead (the caller then returns that job, or creates it under that id
// when its first submitter died before writing it). A different fingerprint
// is ErrIdempotencyConflict.
func (q *Queue) ReserveIdempotencyKey(ctx context.Context, key, jobID, fingerprint string, ttl time.Duration) (string, error) {
	sum := sha256.Sum256([]byte(key))
	k := "rf:idem:" + hex.EncodeToString(sum[:])
	val := jobID + " " + fingerprint
	for range 3 {
		ok, err := q.rdb.SetNX(ctx, k, val, ttl).Result()
		if err != nil {
			return "", fmt.Errorf("reserve idempotency key: %w", err)
		}
		if ok {
			return jobID, nil
		}
		cur, err := q.rdb.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue // expired in between
		}
		if err != nil {
			return "", fmt.Errorf("read idempotency key: %w", err)
		}
		id, fp, _ := strings.Cut(cur, " ")
		if fp != fingerprint {
			return "", ErrIdempotencyConflict
		}
		return id, nil
	}
	return "", errors.New("reserve idempotency key: it keeps expiring")
}

// ---- automations ----

// PutAutomation stores a new automation, refusing a name that is taken.
func (q *Queue) PutAutomation(ctx context.Context, id, name string, record []byte) error {
	ok, err := q.putNamed(ctx, keyAutomations, keyAutomationNames, name, id, record)
	if err != nil {
		return fmt.Errorf("store automation: %w", err)
	}
	if !ok {
		return fmt.Errorf("automation %q: %w", name, ErrExists)
	}
	return nil
}

// UpdateAutomation replaces the record of an existing automation; it
// reports false when there is none.
func (q *Queue) UpdateAutomation(ctx context.Context, id string, record []byte) (bool, error) {
	n, err := q.rdb.HExists(ctx, keyAutomations, id).Result()
	if err != nil || !n {
		return false, err
	}
	return true, q.rdb.HSet(ctx, keyAutomations, id, record).Err()
}

// Automation returns the record of the automation with this id or name, or
// nil.
func (q *Queue) Automation(ctx context.Context, idOrName string) ([]byte, error) {
	b, err := q.rdb.HGet(ctx, keyAutomations, idOrName).Bytes()
	if errors.Is(err, redis.Nil) {
		id, err2 := q.rdb.HGet(ctx, keyAutomationNames, idOrName).Result()
		if errors.Is(err2, redis.Nil) {
			return nil, nil
		}
		if err2 != nil {
			return nil, fmt.Errorf("get automation: %w", err2)
		}
		b, err = q.rdb.HGet(ctx, keyAutomations, id).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("get automation: %w", err)
	}
	return b, nil
}

// Automations returns every automation record.
func (q *Queue) Automations(ctx context.Context) ([][]byte, error) {
	vals, err := q.rdb.HVals(ctx, keyAutomations).Result()
	if err != nil {
		return nil, fmt.Errorf("list automations: %w", err)
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out, nil
}

// DeleteAutomation removes an automation, its name and its cron state.
func (q *Queue) DeleteAutomation(ctx context.Context, id, name string) error {
	pipe := q.rdb.TxPipeline()
	pipe.HDel(ctx, keyAutomations, id)
	pipe.HDel(ctx, keyAutomationNames, name)
	pipe.HDel(ctx, keyCronTicks, id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("delete automation: %w", err)
	}
	return nil
}

// CronTicks returns the last fired tick (unix ms) of every cron automation
// that has fired.
func (q *Queue) CronTicks(ctx context.Context) (map[string]int64, error) {
	m, err := q.rdb.HGetAll(ctx, keyCronTicks).Result()
	if err != nil {
		return nil, fmt.Errorf("read cron ticks: %w", err)
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, _ := strconv.ParseInt(v, 10, 64)
		out[k] = n
	}
	return out, nil
}

// SetCronTick records that an automation's tick fired. Several schedulers
// may record the same tick; submissions are idempotent per tick anyway.
func (q *Queue) SetCronTick(ctx context.Context, id string, tick time.Time) error {
	return q.rdb.HSet(ctx, keyCronTicks, id, tick.UnixMilli()).Err()
}

// ---- job notifications ----

// Notification is the delivery state of one job's notification.
type Notification struct {
	JobID string
	URL   string
	// Pending is the finish being notified ("<state>|<unix ms>"), "" when
	// nothing is pending.
	Pending string
	// Attempts counts failed deliveries of Pending.
	Attempts int
	// Exists is false when the job is gone from Redis.
	Exists bool
	State  string
}

func (q *Queue) indexNotify(ctx context.Context, id string, at time.Time) error {
	if err := q.rdb.ZAdd(ctx, keyNotify, redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
		return fmt.Errorf("index job notification: %w", err)
	}
	return nil
}

// DueNotifications returns up to limit jobs of the notification index whose
// time to look at has come, with their delivery state.
func (q *Queue) DueNotifications(ctx context.Context, now time.Time, limit int) ([]Notification, error) {
	ids, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: keyNotify, Start: "-inf",
		Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("list due notifications: %w", err)
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, jobKey(id), "id", "notify", "npend", "natt", "state")
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read due notifications: %w", err)
		}
	}
	out := make([]Notification, len(ids))
	for i, id := range ids {
		v := cmds[i].Val()
		str := func(k int) string { s, _ := v[k].(string); return s }
		att, _ := strconv.Atoi(str(3))
		out[i] = Notification{JobID: id, Exists: str(0) != "", URL: str(1), Pending: str(2), Attempts: att, State: str(4)}
	}
	return out, nil
}

// LeaseNotification gives one deliverer the job's notification for ttl, so
// that gateways and sweeps running at once rarely send it twice.
func (q *Queue) LeaseNotification(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	return q.rdb.SetNX(ctx, jobPrefix(id)+"nlock", 1, ttl).Result()
}

// NotificationDelivered acknowledges the delivery of pending and drops the
// job from the index when nothing is pending any more and it is finished.
func (q *Queue) NotificationDelivered(ctx context.Context, id, pending string) error {
	if err := q.rdb.FCall(ctx, "rf_notified", []string{jobKey(id)}, pending).Err(); err != nil {
		return fmt.Errorf("acknowledge notification: %w", err)
	}
	return q.dropNotify(ctx, id)
}

// NotificationFailed records a failed delivery and when to try again.
func (q *Queue) NotificationFailed(ctx context.Context, id string, next time.Time) error {
	pipe := q.rdb.Pipeline()
	pipe.HIncrBy(ctx, jobKey(id), "natt", 1)
	pipe.ZAdd(ctx, keyNotify, redis.Z{Score: float64(next.UnixMilli()), Member: id})
	pipe.Del(ctx, jobPrefix(id)+"nlock")
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record failed notification: %w", err)
	}
	return nil
}

// NotificationAbandoned gives up on a pending notification: it is cleared
// like a delivered one, and the reason is kept in the job's "nerr" field.
func (q *Queue) NotificationAbandoned(ctx context.Context, id, pending, reason string) error {
	if err := q.rdb.HSet(ctx, jobKey(id), "nerr", reason).Err(); err != nil {
		return fmt.Errorf("abandon notification: %w", err)
	}
	return q.NotificationDelivered(ctx, id, pending)
}

// RecheckNotification looks at a job again at next (it is still running).
func (q *Queue) RecheckNotification(ctx context.Context, id string, next time.Time) error {
	return q.rdb.ZAdd(ctx, keyNotify, redis.Z{Score: float64(next.UnixMilli()), Member: id}).Err()
}

// dropNotify removes a job from the notification index once it is finished
// with nothing pending. The state is read after the removal: a retry that
// ran in between made the job unfinished (or pending again), and the entry
// is put back.
func (q *Queue) dropNotify(ctx context.Context, id string) error {
	if err := q.rdb.ZRem(ctx, keyNotify, id).Err(); err != nil {
		return fmt.Errorf("drop notification: %w", err)
	}
	v, err := q.rdb.HMGet(ctx, jobKey(id), "state", "npend").Result()
	if err != nil {
		return fmt.Errorf("drop notification: %w", err)
	}
	state, _ := v[0].(string)
	pend, _ := v[1].(string)
	if state == "" || (pend == "" && (state == JobCompleted || state == JobFailed || state == JobCanceled)) {
		q.rdb.Del(ctx, jobPrefix(id)+"nlock")
		return nil
	}
	return q.indexNotify(ctx, id, time.Now())
}

// DropNotification removes a job that no longer exists from the index.
func (q *Queue) DropNotification(ctx context.Context, id string) error {
	return q.dropNotify(ctx, id)
}

// NotifySecret returns the key job notifications are signed with, creating
// a random one the first time.
func (q *Queue) NotifySecret(ctx context.Context) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	if err := q.rdb.SetNX(ctx, keyNotifySecret, hex.EncodeToString(b), 0).Err(); err != nil {
		return "", fmt.Errorf("notification secret: %w", err)
	}
	s, err := q.rdb.Get(ctx, keyNotifySecret).Result()
	if err != nil {
		return "", fmt.Errorf("notification secret: %w", err)
	}
	return s, nil
}

// Ping checks that Redis answers.
func (q *Queue) Ping(ctx context.Context) error { return q.rdb.Ping(ctx).Err() }

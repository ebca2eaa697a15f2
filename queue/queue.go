// Package queue is runfleet's Redis data model: every key name and every state
// transition of clusters, jobs and tasks lives here and nowhere else.
//
// Task state is the truth and streams are hints. A task that becomes ready is
// written to its job's outbox inside the same atomic step that made it ready,
// then XADDed to its cluster's stream; a runner that reads the hint claims the
// task with a compare-and-set on its state, so duplicate or stale hints are
// harmless. Each atomic step is a function of the runfleet Redis Functions
// library (runfleet.lua) that touches the keys of one job's hash tag only.
package queue

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/runfleet/runfleet/rftype"
)

//go:embed runfleet.lua
var library string

// Sentinel errors callers can test with errors.Is.
var (
	ErrClusterNotFound = errors.New("cluster not found")
	ErrClusterExists   = errors.New("cluster already exists")
	ErrJobNotFound     = errors.New("job not found")
	ErrJobCompleted    = errors.New("job is already completed")
	// ErrJobExists means a job with that id was already submitted.
	ErrJobExists = errors.New("job already exists")
	// ErrLost means the task is no longer held by this runner at this attempt.
	ErrLost = errors.New("task no longer held by this runner")
)

// Limits that keep every Redis call short: no command over 10 ms (README,
// "How it works", No long commands; the bar is checked in Performance).
const (
	// StageChunk is the most subtasks written by one rf_stage call.
	StageChunk = 200
	// InlineSubtasks is the most subtasks one completion commits inline; larger
	// sets are staged in chunks first and published by rf_expand.
	InlineSubtasks = 200
	// callBudget bounds the tasks plus inline subtasks of one rf_complete
	// call, the tasks it claims included, and the tasks of one rf_claim call
	// (give or take one hint).
	callBudget = 256
	// publishChunk bounds the XADDs of one pipeline.
	publishChunk = 1000
	// parallelCalls is how many connections stage or publish one large
	// subtask set at once.
	parallelCalls = 4
)

// Queue is the Redis data model over one client.
type Queue struct {
	rdb redis.UniversalClient
}

// New loads the runfleet function library into Redis and returns a Queue.
// On Redis Cluster every master gets the library, as functions are not
// shared between shards.
func New(ctx context.Context, rdb redis.UniversalClient) (*Queue, error) {
	load := func(ctx context.Context, c *redis.Client) error { return c.FunctionLoadReplace(ctx, library).Err() }
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, load)
	} else {
		err = rdb.FunctionLoadReplace(ctx, library).Err()
	}
	if err != nil {
		return nil, fmt.Errorf("load runfleet functions into redis: %w", err)
	}
	return &Queue{rdb: rdb}, nil
}

func nowMS() int64 { return time.Now().UnixMilli() }

func msTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// ---- clusters ----

// Cluster is a named pool of runners and the jobs submitted to it.
type Cluster struct {
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateCluster creates a cluster; an existing slug is ErrClusterExists.
func (q *Queue) CreateCluster(ctx context.Context, slug, name string) (Cluster, error) {
	if err := rftype.ValidateSlug("cluster", slug); err != nil {
		return Cluster{}, err
	}
	if name == "" {
		name = slug
	}
	c := Cluster{Slug: slug, Name: name, CreatedAt: time.UnixMilli(nowMS()).UTC()}
	b, _ := json.Marshal(c)
	ok, err := q.rdb.HSetNX(ctx, keyClusters, slug, b).Result()
	if err != nil {
		return Cluster{}, fmt.Errorf("create cluster: %w", err)
	}
	if !ok {
		return Cluster{}, fmt.Errorf("%w: %q", ErrClusterExists, slug)
	}
	return c, nil
}

func clusterNotFound(slug string) error {
	return fmt.Errorf("%w: %q (create it with `runfleet cluster create %s`)", ErrClusterNotFound, slug, slug)
}

// GetCluster returns one cluster or ErrClusterNotFound.
func (q *Queue) GetCluster(ctx context.Context, slug string) (Cluster, error) {
	if err := rftype.ValidateSlug("cluster", slug); err != nil {
		return Cluster{}, err
	}
	b, err := q.rdb.HGet(ctx, keyClusters, slug).Bytes()
	if errors.Is(err, redis.Nil) {
		return Cluster{}, clusterNotFound(slug)
	}
	if err != nil {
		return Cluster{}, fmt.Errorf("get cluster: %w", err)
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return Cluster{}, fmt.Errorf("decode cluster %q: %w", slug, err)
	}
	return c, nil
}

// ListClusters returns every cluster.
func (q *Queue) ListClusters(ctx context.Context) ([]Cluster, error) {
	m, err := q.rdb.HGetAll(ctx, keyClusters).Result()
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	out := make([]Cluster, 0, len(m))
	for slug, v := range m {
		var c Cluster
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			return nil, fmt.Errorf("decode cluster %q: %w", slug, err)
		}
		out = append(out, c)
	}
	sortClusters(out)
	return out, nil
}

// DeleteCluster removes a cluster and its task registry. Jobs already
// submitted to it keep their records; their queued tasks are no longer handed
// out because no runner can join a deleted cluster.
func (q *Queue) DeleteCluster(ctx context.Context, slug string) error {
	if _, err := q.GetCluster(ctx, slug); err != nil {
		return err
	}
	if err := q.rdb.HDel(ctx, keyClusters, slug).Err(); err != nil {
		return fmt.Errorf("delete cluster: %w", err)
	}
	// Its deployments go too, so a cluster created again under the slug
	// starts empty; release runners still watching it drain.
	if err := q.rdb.Del(ctx, identsKey(slug), deploysKey(slug), deployRevKey(slug)).Err(); err != nil {
		return fmt.Errorf("delete cluster: %w", err)
	}
	return q.rdb.Publish(ctx, DeploymentsChannel(slug), "0").Err()
}

// MissingClusters returns those of slugs that do not exist.
func (q *Queue) MissingClusters(ctx context.Context, slugs []string) ([]string, error) {
	if len(slugs) == 0 {
		return nil, nil
	}
	vals, err := q.rdb.HMGet(ctx, keyClusters, slugs...).Result()
	if err != nil {
		return nil, fmt.Errorf("check clusters: %w", err)
	}
	var missing []string
	for i, v := range vals {
		if v == nil {
			missing = append(missing, slugs[i])
		}
	}
	return missing, nil
}

// RegisterIdentifiers records that a runner of cluster can run ids, so that
// submissions naming unknown tasks can be refused.
func (q *Queue) RegisterIdentifiers(ctx context.Context, cluster string, ids []Identifier) error {
	if len(ids) == 0 {
		return nil
	}
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id.Name + "\x00" + id.Version()
	}
	return q.rdb.SAdd(ctx, identsKey(cluster), members...).Err()
}

// RegisteredIdentifiers lists every identifier runners of cluster advertised.
func (q *Queue) RegisteredIdentifiers(ctx context.Context, cluster string) ([]Identifier, error) {
	ms, err := q.rdb.SMembers(ctx, identsKey(cluster)).Result()
	if err != nil {
		return nil, fmt.Errorf("list registered tasks: %w", err)
	}
	return parseIdents(ms), nil
}

// ServedIdentifiers is RegisteredIdentifiers of a cluster that must exist
// (else ErrClusterNotFound), in one round trip: every submission checks
// both.
func (q *Queue) ServedIdentifiers(ctx context.Context, cluster string) ([]Identifier, error) {
	if err := rftype.ValidateSlug("cluster", cluster); err != nil {
		return nil, err
	}
	pipe := q.rdb.Pipeline()
	exists := pipe.HExists(ctx, keyClusters, cluster)
	members := pipe.SMembers(ctx, identsKey(cluster))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list served tasks: %w", err)
	}
	if !exists.Val() {
		return nil, clusterNotFound(cluster)
	}
	return parseIdents(members.Val()), nil
}

// parseIdents decodes members of an idents set ("name\x00vM.m").
func parseIdents(ms []string) []Identifier {
	out := make([]Identifier, 0, len(ms))
	for _, m := range ms {
		name, ver, ok := strings.Cut(m, "\x00")
		if !ok {
			continue
		}
		if id, err := ParseIdentifier(name, ver); err == nil {
			out = append(out, id)
		}
	}
	return out
}

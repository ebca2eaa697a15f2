package queue

import "strconv"

// Key layout. Everything of one job shares the hash tag {j:<id>}; the task
// streams and task registry of one cluster share {c:<slug>}. Nothing outside
// this package builds key names.
//
//	rf:clusters                      hash slug -> cluster JSON
//	rf:jobs                          sorted set job id -> created unix ms
//	rf:{c:<slug>}:idents             set of "name\x00vM.m" registered by runners
//	rf:{c:<slug>}:q:<name>:vM.m      stream of ready-task hints (fields j job, t first seq,
//	                                 n task count when above 1: see Hint)
//	rf:{c:<slug>}:deploys            hash workflow -> deployment JSON (deploy.go)
//	rf:{c:<slug>}:deployrev          deployment revision counter, bumped by every change
//	rf:{c:<slug>}:deployed           pub/sub channel (not a key): the new revision after each change
//	rf:{j:<id>}:job                  hash: job record and task counters
//	rf:{j:<id>}:t:<seq>              hash: one task (fields in runfleet.lua)
//	rf:{j:<id>}:tb:<seq/64>          hash seq -> record: computed tasks without children or
//	                                 dependents, moved out of their hashes (packed.go)
//	rf:{j:<id>}:ids                  hash: the task identifiers bucket records name (packed.go)
//	rf:{j:<id>}:outbox               hash seq -> stream: ready tasks not yet XADDed,
//	                                 and "x:<parent>" -> cursor of a staged subtask set
//	rf:{j:<id>}:held                 hash seq -> stream: hints read while the job was stopped
//	rf:{j:<id>}:failed               set of failed task seqs (for retry)
//	rf:{j:<id>}:progress             hash "label\x00total" / "label\x00done" -> count
//	rf:{j:<id>}:nonce                counter making outbox values unique per call
//	rf:{j:<id>}:staged               hash "<parent>:<attempt>:<base>" -> furthest offset written:
//	                                 staged subtask sets not yet committed (stage_gc.go)
//	rf:{j:<id>}:events               stream of job events (state, progress, tasks), capped,
//	                                 written by the call that changed the job (events.go)
//	rf:{j:<id>}:logs                 stream of task log records (t task seq, r record JSON),
//	                                 capped in bytes by the job hash's "lgb"/"lgx" (logs.go)
//	rf:{j:<id>}:att                  hash "<seq>:<attempt>" -> attempt record JSON of attempts
//	                                 that did not compute, written by rf_fail/rf_reclaim (attempts.go)
//	rf:{j:<id>}:runners              hash runner id -> RunnerContext JSON, once per runner (attempts.go)
//	rf:{j:<id>}:cache                hash key -> value: the job's Redis cache (cache.go)
//	rf:{j:<id>}:cachex               sorted set of the cache's keys, all scored 0 (sorted listings)
//	rf:{j:<id>}:cacheurls            set of object-store cache URLs the job's tasks used (cache.go)
//	rf:cachegc                       set of "<job id> <url>": object-store caches of jobs that
//	                                 left Redis, still to delete (cache.go); the same URLs hold the
//	                                 jobs' stored inputs (payload.go)
//	rf:payloadpending                sorted set "<job id> <url>" -> unix ms deadline: stored inputs
//	                                 uploaded for a job still being submitted (payload.go)
//	rf:archived                      hash job id -> archive record JSON: where an archived
//	                                 job's export lives once it left Redis (archive.go)
//
// Archiving removes every key of a job's tag: a new per-job key must be
// added to JOB_KEYS in runfleet.lua too.
const (
	keyClusters = "rf:clusters"
	keyJobs     = "rf:jobs"
	keyArchived = "rf:archived"
	// Group is the one consumer group every runner of a cluster reads with.
	Group = "runners"
)

func jobPrefix(id string) string { return "rf:{j:" + id + "}:" }
func jobKey(id string) string    { return jobPrefix(id) + "job" }
func eventsKey(id string) string { return jobPrefix(id) + "events" }
func taskKey(id string, seq int64) string {
	return jobPrefix(id) + "t:" + strconv.FormatInt(seq, 10)
}
func clusterPrefix(slug string) string { return "rf:{c:" + slug + "}:" }
func identsKey(slug string) string     { return clusterPrefix(slug) + "idents" }
func deploysKey(slug string) string    { return clusterPrefix(slug) + "deploys" }
func deployRevKey(slug string) string  { return clusterPrefix(slug) + "deployrev" }

// DeploymentsChannel is the pub/sub channel announcing every change of a
// cluster's deployments; the message is the new revision. Plain PUBLISH and
// SUBSCRIBE reach every node of a Redis Cluster.
func DeploymentsChannel(cluster string) string { return clusterPrefix(cluster) + "deployed" }

// StreamKey is the stream carrying hints for tasks of one exact identifier in
// one cluster. It must match stream_key in runfleet.lua.
func StreamKey(cluster string, id Identifier) string {
	return clusterPrefix(cluster) + "q:" + id.Name + ":" + id.Version()
}

// Package events tests the way jobs come from events, end to end and with
// nothing faked: a real MinIO posts its bucket notifications through its
// webhook target to a real gateway (controlplane.Gateway over a real
// redis-server), whose storage automations submit the jobs a runner then
// runs; and several gateways on one Redis fire cron automations.
//
// What the tests pin down:
//
//   - One job per object version, however often the notification arrives:
//     the same content uploaded twice to an unversioned bucket, or the
//     captured notification posted again, finds the job the first delivery
//     made; a versioned bucket makes one job per version.
//   - The job's root input carries the object, with its key URL-decoded
//     (MinIO sends keys query-escaped), and the automation's prototype
//     fields.
//   - MinIO authenticates with "Authorization: Bearer <token>" (its
//     MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_<ID>); a wrong token is refused with
//     401 and writes nothing; an event no automation watches is answered
//     200, reported as ignored, and makes no job.
//   - With a queue directory (MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_<ID>) MinIO
//     keeps the events of a gateway that is down and delivers them when it
//     is back.
//   - Two gateways firing one cron automation make one job per tick.
//
// The benchmarks measure HTTP submissions through a gateway from 64
// concurrent clients, and the time from a MinIO upload to the job being
// queued.
//
// The package has no non-test code but this comment.
package events

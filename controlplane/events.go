package controlplane

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/runfleet/runfleet/workflows"
)

// ObjectRef is what a storage automation adds to its prototype input, under
// "object": the created object.
type ObjectRef struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Size      int64     `json:"size"`
	ETag      string    `json:"etag"`
	VersionID string    `json:"version_id"`
	EventTime time.Time `json:"event_time"`
}

// handleS3EventAs handles an S3 notification; tok, when set, is the API
// token that delivered it, and limits the clusters it may submit to.
func (s *Server) handleS3EventAs(ctx context.Context, ev events.S3Event, tok *Token) (EventReport, error) {
	rep := EventReport{Submitted: []EventJob{}}
	if len(ev.Records) == 0 {
		rep.Ignored = append(rep.Ignored, "the event has no records")
		s.log.Warn("s3 event without records ignored")
		return rep, nil
	}
	autos, err := ListAutomations(ctx, s.cfg.Client)
	if err != nil {
		return rep, err
	}
	var errs []error
	for i, rec := range ev.Records {
		bucket, key := rec.S3.Bucket.Name, rec.S3.Object.URLDecodedKey
		if key == "" {
			key = rec.S3.Object.Key
		}
		ignore := func(reason string) {
			msg := fmt.Sprintf("record %d (%s/%s): %s", i, bucket, key, reason)
			rep.Ignored = append(rep.Ignored, msg)
			s.log.Warn("s3 event record ignored", "bucket", bucket, "key", key, "event", rec.EventName, "reason", reason)
		}
		if rec.EventSource != "aws:s3" && rec.EventSource != "minio:s3" {
			ignore(fmt.Sprintf("event source %q is not aws:s3 or minio:s3", rec.EventSource))
			continue
		}
		if !strings.HasPrefix(strings.TrimPrefix(rec.EventName, "s3:"), "ObjectCreated:") {
			ignore(fmt.Sprintf("event %q is not an object creation", rec.EventName))
			continue
		}
		if bucket == "" || key == "" {
			ignore("no bucket name or object key")
			continue
		}
		obj := ObjectRef{Bucket: bucket, Key: key, Size: rec.S3.Object.Size,
			ETag: strings.Trim(rec.S3.Object.ETag, `"`), VersionID: rec.S3.Object.VersionID, EventTime: rec.EventTime.UTC()}
		matched := false
		for _, a := range autos {
			if a.Storage == "" || !a.matches(bucket, key) {
				continue
			}
			matched = true
			if a.Paused {
				ignore(fmt.Sprintf("automation %q is paused", a.Name))
				continue
			}
			if tok != nil && !tok.allows(a.Cluster) {
				ignore(fmt.Sprintf("token %q may not submit to cluster %q of automation %q", tok.Name, a.Cluster, a.Name))
				continue
			}
			// One job per object version: the version id where the bucket
			// is versioned, else the ETag (the content).
			version := obj.VersionID
			if version == "" || version == "null" {
				version = "etag:" + obj.ETag
			}
			input, err := withField(a.Input, "object", obj)
			if err != nil {
				ignore(fmt.Sprintf("automation %q: build input: %v", a.Name, err))
				continue
			}
			ej, err := s.submitFor(ctx, a, input, "s3:"+a.ID+":"+bucket+"/"+key+"@"+version,
				fmt.Sprintf("%s %s", a.Name, key))
			if errors.Is(err, errPermanent) {
				ignore(err.Error())
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rep.Submitted = append(rep.Submitted, ej)
		}
		if !matched {
			ignore("no storage automation watches this bucket and key")
		}
	}
	return rep, errors.Join(errs...)
}

// errPermanent marks a submission error that a redelivery would not fix
// (the automation's cluster or task is gone): such events are reported and
// logged, not failed, so the event source does not retry them forever.
var errPermanent = errors.New("automation cannot submit")

// submitFor submits automation a's job once per idempotency key.
func (s *Server) submitFor(ctx context.Context, a Automation, input []byte, key, jobName string) (EventJob, error) {
	j, created, err := s.cfg.Client.Jobs().SubmitOnce(ctx, workflows.SubmitRequest{
		Name: jobName, Cluster: a.Cluster, Task: workflows.NewTaskIdentifier(a.Task, a.Version),
		Input: input, MaxRetries: a.MaxRetries, Notify: a.Notify, IdempotencyKey: key, IdempotencyTTL: EventTTL,
		// The key names the object version or tick; a redelivery differs
		// only in details such as the event time, and is the same job.
		Fingerprint: "event"})
	if err != nil {
		if errors.Is(err, workflows.ErrClusterNotFound) || errors.Is(err, workflows.ErrUnknownTask) ||
			errors.Is(err, workflows.ErrInvalidInput) || errors.Is(err, workflows.ErrInputTooLarge) ||
			errors.Is(err, workflows.ErrInvalidTask) || errors.Is(err, workflows.ErrIdempotencyConflict) {
			s.log.Error("automation cannot submit", "automation", a.Name, "err", err)
			return EventJob{}, fmt.Errorf("%w %q: %v", errPermanent, a.Name, err)
		}
		return EventJob{}, fmt.Errorf("automation %q: %w", a.Name, err)
	}
	if created {
		s.log.Info("automation submitted a job", "automation", a.Name, "job", j.ID, "cluster", j.Cluster)
	}
	return EventJob{Automation: a.ID, JobID: j.ID, Created: created}, nil
}

// HandleSchedule submits the job of one cron tick of an automation.
func (s *Server) HandleSchedule(ctx context.Context, ev ScheduleEvent) (EventReport, error) {
	rep := EventReport{Submitted: []EventJob{}}
	if ev.Automation == "" {
		return rep, errors.New("schedule event: field \"automation\" is empty")
	}
	if ev.ScheduledTime.IsZero() {
		return rep, errors.New("schedule event: field \"scheduled_time\" is missing")
	}
	a, err := GetAutomation(ctx, s.cfg.Client, ev.Automation)
	if errors.Is(err, ErrAutomationNotFound) {
		// Deleted while its schedule still fires: nothing to retry.
		rep.Ignored = append(rep.Ignored, err.Error())
		s.log.Warn("schedule for an unknown automation ignored", "automation", ev.Automation)
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	if a.Cron == "" {
		rep.Ignored = append(rep.Ignored, fmt.Sprintf("automation %q has no cron schedule", a.Name))
		return rep, nil
	}
	if a.Paused {
		rep.Ignored = append(rep.Ignored, fmt.Sprintf("automation %q is paused", a.Name))
		return rep, nil
	}
	tick := ev.ScheduledTime.UTC().Truncate(time.Second)
	ej, err := s.submitFor(ctx, a, a.Input, fmt.Sprintf("cron:%s:%d", a.ID, tick.Unix()),
		fmt.Sprintf("%s %s", a.Name, tick.Format(time.RFC3339)))
	if errors.Is(err, errPermanent) {
		rep.Ignored = append(rep.Ignored, err.Error())
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	rep.Submitted = append(rep.Submitted, ej)
	return rep, nil
}

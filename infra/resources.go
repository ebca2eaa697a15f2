package infra

import (
	"context"
	"fmt"
	"strings"
)

// resources lists the stack's resources in dependency order: each one's
// plan may need what the ones before it created (ARNs, the API id).
func (e *Engine) resources(ctx context.Context, rep *Report, destroying bool) []resource {
	s := e.stack
	bucket := &bucketResource{e: e}
	if s.Target == TargetMinIO {
		rs := []resource{bucket}
		rep.Notes = append(rep.Notes, fmt.Sprintf("MinIO: runners need read-only access to s3://%s/%s; create a MinIO user for them with mc (see the README, \"Deploying on MinIO\"): the stack grants no anonymous access.", s.Bucket.Name, s.Bucket.ReleasesPrefix))
		return append(rs, e.notificationResources(ctx, rep, destroying)...)
	}
	var rs []resource
	if s.Functions.RedisURLParameter != "" {
		rs = append(rs, &parameterResource{e: e})
	}
	rs = append(rs,
		bucket,
		&managedPolicyResource{e: e, policy: e.name("runner-read"), arn: e.policyARN("runner-read"), doc: e.runnerReadPolicy},
		&logGroupResource{e: e, group: e.logGroup("submit")},
		&logGroupResource{e: e, group: e.logGroup("sweep")},
		&roleResource{e: e, role: e.name("functions"), service: "lambda.amazonaws.com", policy: e.functionsPolicy},
	)
	if s.Schedule.Mode == ScheduleScheduler {
		rs = append(rs, &roleResource{e: e, role: e.name("scheduler"), service: "scheduler.amazonaws.com", policy: e.schedulerPolicy})
	}
	rs = append(rs,
		&functionResource{e: e, fn: "submit"},
		&functionResource{e: e, fn: "sweep"},
	)
	if s.Schedule.Mode == ScheduleScheduler {
		rs = append(rs, &scheduleGroupResource{e: e}, &sweepScheduleResource{e: e})
	} else {
		rule := &sweepRuleResource{e: e}
		rs = append(rs, rule,
			&permissionResource{e: e, fn: "sweep", sid: e.ownPrefix() + "events-sweep", principal: "events.amazonaws.com",
				sourceARN: fixed(rule.arn())},
			&permissionResource{e: e, fn: "submit", sid: e.ownPrefix() + "events-cron", principal: "events.amazonaws.com",
				sourceARN: fixed(e.cronRulePattern())})
	}
	rs = append(rs,
		&httpAPIResource{e: e},
		&permissionResource{e: e, fn: "submit", sid: e.ownPrefix() + "apigateway", principal: "apigateway.amazonaws.com",
			sourceARN: e.apiSourceARN},
	)
	return append(rs, e.notificationResources(ctx, rep, destroying)...)
}

func fixed(arn string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return arn, nil }
}

// notificationResources are the S3 notifications (and, on aws and
// localstack, the permissions for S3 to invoke submit) of every bucket
// storage automations watch. Without the automations they are skipped,
// except on destroy, which also finds the buckets the stack notified before
// from the submit function's permissions.
func (e *Engine) notificationResources(ctx context.Context, rep *Report, destroying bool) []resource {
	watched := e.watchedBuckets()
	if !e.opts.AutomationsKnown && !destroying {
		rep.Notes = append(rep.Notes, "storage automations not read (no Redis URL: give --redis or $RUNFLEET_REDIS_URL): S3 notifications and cron schedules left as they are")
		return nil
	}
	if destroying {
		if watched == nil {
			watched = map[string]map[string]string{}
		}
		if _, ok := watched[e.stack.Bucket.Name]; !ok {
			watched[e.stack.Bucket.Name] = nil
		}
		if e.stack.Target != TargetMinIO {
			sts, err := e.functionPolicy(ctx, "submit")
			if err == nil {
				for _, st := range sts {
					if b, ok := strings.CutPrefix(st.Sid, e.ownPrefix()+"s3-"); ok && b != "" {
						if name, ok := strings.CutPrefix(st.sourceARN(), "arn:aws:s3:::"); ok {
							watched[name] = nil
						}
					}
				}
			}
		}
	}
	var rs []resource
	for _, bucket := range sortedKeys(watched) {
		if e.stack.Target != TargetMinIO {
			rs = append(rs, &permissionResource{e: e, fn: "submit", sid: e.ownPrefix() + "s3-" + sidSafe(bucket),
				principal: "s3.amazonaws.com", sourceARN: fixed("arn:aws:s3:::" + bucket), sourceAccount: true})
		}
		rs = append(rs, &notificationResource{e: e, bucket: bucket, want: watched[bucket]})
	}
	return rs
}

// sidSafe maps a bucket name to statement id characters.
func sidSafe(s string) string { return strings.ReplaceAll(s, ".", "_") }

func (e *Engine) bucketARN() string { return "arn:aws:s3:::" + e.stack.Bucket.Name }

// runnerReadPolicy lets runners read releases and nothing else.
func (e *Engine) runnerReadPolicy() string {
	rel := e.stack.Bucket.ReleasesPrefix
	return newPolicy(
		statement{Sid: "ReadReleases", Action: "s3:GetObject", Resource: e.bucketARN() + "/" + rel + "*"},
		statement{Sid: "ListReleases", Action: "s3:ListBucket", Resource: e.bucketARN(),
			Condition: map[string]any{"StringLike": map[string]any{"s3:prefix": []string{rel, rel + "*"}}}},
	)
}

// functionsPolicy is the least the functions need: their log groups, the
// archive prefix, the one secret, and in the sweep's schedule sync the
// stack's own schedules or rules.
func (e *Engine) functionsPolicy() string {
	arch := e.stack.Bucket.ArchivePrefix
	logs := []string{}
	for _, fn := range []string{"submit", "sweep"} {
		logs = append(logs, fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s:*", e.region, e.account, e.logGroup(fn)))
	}
	st := []statement{
		{Sid: "Logs", Action: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resource: logs},
		{Sid: "Archive", Action: []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, Resource: e.bucketARN() + "/" + arch + "*"},
		{Sid: "ListArchive", Action: "s3:ListBucket", Resource: e.bucketARN(),
			Condition: map[string]any{"StringLike": map[string]any{"s3:prefix": []string{arch, arch + "*"}}}},
	}
	secret := e.redisSecretARN()
	if strings.Contains(secret, ":secretsmanager:") {
		st = append(st, statement{Sid: "RedisURL", Action: "secretsmanager:GetSecretValue", Resource: secret})
	} else {
		st = append(st, statement{Sid: "RedisURL", Action: "ssm:GetParameter", Resource: secret},
			statement{Sid: "RedisURLKey", Action: "kms:Decrypt", Resource: "*",
				Condition: map[string]any{"StringEquals": map[string]any{"kms:ViaService": "ssm." + e.region + ".amazonaws.com"}}})
	}
	if e.stack.Schedule.Mode == ScheduleScheduler {
		st = append(st,
			statement{Sid: "CronSchedules", Action: []string{"scheduler:GetSchedule", "scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule"},
				Resource: fmt.Sprintf("arn:aws:scheduler:%s:%s:schedule/%s/*", e.region, e.account, e.scheduleGroup())},
			statement{Sid: "ListCronSchedules", Action: "scheduler:ListSchedules", Resource: "*"},
			statement{Sid: "ReadScheduleGroup", Action: "scheduler:GetScheduleGroup",
				Resource: fmt.Sprintf("arn:aws:scheduler:%s:%s:schedule-group/%s", e.region, e.account, e.scheduleGroup())},
			statement{Sid: "PassSchedulerRole", Action: "iam:PassRole", Resource: e.roleARN("scheduler")},
		)
	} else {
		st = append(st,
			statement{Sid: "CronRules", Action: []string{"events:PutRule", "events:PutTargets", "events:DeleteRule", "events:RemoveTargets",
				"events:DescribeRule", "events:ListTargetsByRule", "events:TagResource", "events:ListTagsForResource"},
				Resource: e.cronRulePattern()},
			statement{Sid: "ListCronRules", Action: "events:ListRules", Resource: "*"},
		)
	}
	return newPolicy(st...)
}

// schedulerPolicy lets EventBridge Scheduler invoke the two functions.
func (e *Engine) schedulerPolicy() string {
	return newPolicy(statement{Sid: "Invoke", Action: "lambda:InvokeFunction",
		Resource: []string{e.functionARN("submit"), e.functionARN("sweep")}})
}

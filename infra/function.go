package infra

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Environment variables the deployer sets on the functions. The Redis URL
// itself is never among them: the functions resolve the secret's ARN.
const (
	EnvRedisURLSecret = "RUNFLEET_REDIS_URL_SECRET"
	EnvScheduleMode   = "RUNFLEET_SCHEDULE_MODE"
	EnvScheduleGroup  = "RUNFLEET_SCHEDULE_GROUP"
	EnvScheduleTarget = "RUNFLEET_SCHEDULE_TARGET_ARN"
	EnvScheduleRole   = "RUNFLEET_SCHEDULE_ROLE_ARN"
	EnvStack          = "RUNFLEET_STACK"
)

const functionRuntime = lambdatypes.RuntimeProvidedal2023

// functionResource is the submit or sweep Lambda function.
type functionResource struct {
	e  *Engine
	fn string // submit or sweep

	zip    []byte
	sha256 string // base64, as Lambda reports CodeSha256
}

func (f *functionResource) kind() string { return "lambda function" }
func (f *functionResource) name() string { return f.e.functionName(f.fn) }

func (f *functionResource) env() map[string]string {
	s := f.e.stack
	env := map[string]string{
		EnvRedisURLSecret:    f.e.redisSecretARN(),
		"RUNFLEET_STORE":     "s3://" + s.Bucket.Name + "/" + strings.TrimSuffix(s.Bucket.ArchivePrefix, "/"),
		"RUNFLEET_RETENTION": s.Functions.Retention,
	}
	if f.fn == "sweep" {
		env[EnvScheduleMode] = s.Schedule.Mode
		env[EnvScheduleTarget] = f.e.functionARN("submit")
		env[EnvStack] = s.Name
		if s.Schedule.Mode == ScheduleScheduler {
			env[EnvScheduleGroup] = f.e.scheduleGroup()
			env[EnvScheduleRole] = f.e.roleARN("scheduler")
		}
	}
	return env
}

func (f *functionResource) arch() lambdatypes.Architecture {
	return lambdatypes.Architecture(f.e.stack.Functions.Architecture)
}

func (f *functionResource) readZip() error {
	if f.zip != nil {
		return nil
	}
	p := f.e.stack.zipPath(f.fn)
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s (build it with `go tool task functions`): %w", p, err)
	}
	sum := sha256.Sum256(b)
	f.zip, f.sha256 = b, base64.StdEncoding.EncodeToString(sum[:])
	return nil
}

func shortSHA(b64 string) string {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 4 {
		return b64
	}
	return hex.EncodeToString(raw[:4]) + "…"
}

func (f *functionResource) plan(ctx context.Context) (diff, error) {
	var d diff
	if err := f.readZip(); err != nil {
		return d, err
	}
	s := f.e.stack.Functions
	got, err := f.e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(f.name())})
	if isNotFound(err) {
		d.action = ActionCreate
		d.detail = fmt.Sprintf("%s, %s, %d MB, %ds timeout, zip sha256 %s", s.Architecture, functionRuntime, s.MemoryMB, s.TimeoutSeconds, shortSHA(f.sha256))
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if err := f.e.claim(got.Tags[TagKey], &d); err != nil {
		return d, err
	}
	c := got.Configuration
	if aws.ToString(c.CodeSha256) != f.sha256 {
		d.change("code", "sha256 "+shortSHA(aws.ToString(c.CodeSha256)), "sha256 "+shortSHA(f.sha256))
	}
	if len(c.Architectures) != 1 || c.Architectures[0] != f.arch() {
		cur := "x86_64"
		if len(c.Architectures) == 1 {
			cur = string(c.Architectures[0])
		}
		d.change("architecture", cur, string(f.arch()))
	}
	if c.Runtime != functionRuntime {
		d.change("runtime", string(c.Runtime), string(functionRuntime))
	}
	if aws.ToString(c.Handler) != "bootstrap" {
		d.change("handler", aws.ToString(c.Handler), "bootstrap")
	}
	if got := aws.ToInt32(c.MemorySize); got != s.MemoryMB {
		d.change("memory", strconv.Itoa(int(got)), strconv.Itoa(int(s.MemoryMB)))
	}
	if got := aws.ToInt32(c.Timeout); got != s.TimeoutSeconds {
		d.change("timeout", strconv.Itoa(int(got))+"s", strconv.Itoa(int(s.TimeoutSeconds))+"s")
	}
	if role := f.e.roleARN("functions"); aws.ToString(c.Role) != role {
		d.change("role", aws.ToString(c.Role), role)
	}
	var cur map[string]string
	if c.Environment != nil {
		cur = c.Environment.Variables
	}
	want := f.env()
	var names []string
	for _, k := range sortedKeys(unionKeys(cur, want)) {
		if cur[k] != want[k] {
			names = append(names, k)
		}
	}
	if len(names) > 0 {
		// Names only: values are ARNs and settings, but never worth a
		// wall of text.
		d.changed("environment " + strings.Join(names, " "))
	}
	return d, nil
}

func unionKeys(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	if m == nil {
		m = map[string]string{}
	}
	maps.Copy(m, b)
	return m
}

func (f *functionResource) apply(ctx context.Context, d diff) error {
	s := f.e.stack.Functions
	name := aws.String(f.name())
	if d.action == ActionCreate {
		in := &lambda.CreateFunctionInput{
			FunctionName:  name,
			Role:          aws.String(f.e.roleARN("functions")),
			Runtime:       functionRuntime,
			Handler:       aws.String("bootstrap"),
			Architectures: []lambdatypes.Architecture{f.arch()},
			MemorySize:    aws.Int32(s.MemoryMB),
			Timeout:       aws.Int32(s.TimeoutSeconds),
			Environment:   &lambdatypes.Environment{Variables: f.env()},
			Code:          &lambdatypes.FunctionCode{ZipFile: f.zip},
			Tags:          f.e.tags(),
			Description:   aws.String("runfleet " + f.fn + " (stack " + f.e.stack.Name + ")"),
		}
		// A role just created takes a few seconds before Lambda may assume it.
		deadline := time.Now().Add(90 * time.Second)
		for {
			_, err := f.e.lambda.CreateFunction(ctx, in)
			if err == nil {
				break
			}
			if !isCode(err, "InvalidParameterValueException") || !strings.Contains(err.Error(), "cannot be assumed") || time.Now().After(deadline) {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(3 * time.Second):
			}
		}
		return f.waitUpdated(ctx)
	}
	if d.has("tags") {
		if _, err := f.e.lambda.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(f.e.functionARN(f.fn)), Tags: f.e.tags()}); err != nil {
			return fmt.Errorf("tag: %w", err)
		}
	}
	if d.has("code") || d.has("architecture") {
		if _, err := f.e.lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: name,
			ZipFile: f.zip, Architectures: []lambdatypes.Architecture{f.arch()}}); err != nil {
			return fmt.Errorf("update code: %w", err)
		}
		if err := f.waitUpdated(ctx); err != nil {
			return err
		}
	}
	configFields := false
	for _, fc := range d.fields {
		switch {
		case fc.name == "runtime", fc.name == "handler", fc.name == "memory", fc.name == "timeout", fc.name == "role",
			strings.HasPrefix(fc.name, "environment"):
			configFields = true
		}
	}
	if configFields {
		if _, err := f.e.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: name,
			Role: aws.String(f.e.roleARN("functions")), Runtime: functionRuntime, Handler: aws.String("bootstrap"),
			MemorySize: aws.Int32(s.MemoryMB), Timeout: aws.Int32(s.TimeoutSeconds),
			Environment: &lambdatypes.Environment{Variables: f.env()}}); err != nil {
			return fmt.Errorf("update configuration: %w", err)
		}
		return f.waitUpdated(ctx)
	}
	return nil
}

// waitUpdated waits until Lambda has finished the last create or update,
// as the next update is refused before that.
func (f *functionResource) waitUpdated(ctx context.Context) error {
	w := lambda.NewFunctionUpdatedV2Waiter(f.e.lambda, func(o *lambda.FunctionUpdatedV2WaiterOptions) {
		o.MinDelay, o.MaxDelay = 500*time.Millisecond, 5*time.Second
	})
	err := w.Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(f.name())}, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("wait for the update to finish: %w", err)
	}
	return nil
}

func (f *functionResource) inspect(ctx context.Context) (presence, error) {
	got, err := f.e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(f.name())})
	if isNotFound(err) {
		return presence{}, nil
	}
	if err != nil {
		return presence{}, err
	}
	return presence{exists: true, owner: got.Tags[TagKey]}, nil
}

func (f *functionResource) remove(ctx context.Context) error {
	_, err := f.e.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(f.name())})
	if isNotFound(err) {
		return nil
	}
	return err
}

// permissionResource is one statement of a function's resource policy,
// letting a service invoke it. Its statement id starts with the stack's
// prefix, which is how the stack owns it.
type permissionResource struct {
	e         *Engine
	fn        string
	sid       string
	principal string
	// sourceARN returns the ARN allowed to invoke, or "" when it is not
	// known yet (plan before the API exists).
	sourceARN     func(ctx context.Context) (string, error)
	sourceAccount bool

	present bool
}

func (p *permissionResource) kind() string { return "lambda permission" }
func (p *permissionResource) name() string { return p.e.functionName(p.fn) + "/" + p.sid }

// policyStatement is a statement of a Lambda resource policy as GetPolicy
// returns it.
type policyStatement struct {
	Sid       string                       `json:"Sid"`
	Principal map[string]any               `json:"Principal"`
	Condition map[string]map[string]string `json:"Condition"`
}

// functionPolicy returns the statements of fn's resource policy (none when
// the function or its policy does not exist).
func (e *Engine) functionPolicy(ctx context.Context, fn string) ([]policyStatement, error) {
	out, err := e.lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(e.functionName(fn))})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get policy: %w", err)
	}
	var doc struct {
		Statement []policyStatement `json:"Statement"`
	}
	if err := jsonUnmarshal(aws.ToString(out.Policy), &doc); err != nil {
		return nil, fmt.Errorf("decode policy: %w", err)
	}
	return doc.Statement, nil
}

func (st policyStatement) sourceARN() string {
	for _, op := range []string{"ArnLike", "ArnEquals"} {
		if v := st.Condition[op]["AWS:SourceArn"]; v != "" {
			return v
		}
	}
	return ""
}

func (st policyStatement) principal() string {
	if s, ok := st.Principal["Service"].(string); ok {
		return s
	}
	return ""
}

func (p *permissionResource) plan(ctx context.Context) (diff, error) {
	var d diff
	want, err := p.sourceARN(ctx)
	if err != nil {
		return d, err
	}
	sts, err := p.e.functionPolicy(ctx, p.fn)
	if err != nil {
		return d, err
	}
	p.present = false
	for _, st := range sts {
		if st.Sid != p.sid {
			continue
		}
		p.present = true
		if st.principal() != p.principal {
			d.change("principal", st.principal(), p.principal)
		}
		if want != "" && st.sourceARN() != want {
			d.change("source", st.sourceARN(), want)
		}
		return d, nil
	}
	d.action = ActionCreate
	d.detail = p.principal + " may invoke it"
	if want != "" {
		d.detail += " from " + want
	}
	return d, nil
}

func (p *permissionResource) apply(ctx context.Context, _ diff) error {
	src, err := p.sourceARN(ctx)
	if err != nil {
		return err
	}
	if src == "" {
		return errors.New("its source does not exist")
	}
	if p.present {
		if err := p.remove(ctx); err != nil {
			return err
		}
	}
	in := &lambda.AddPermissionInput{FunctionName: aws.String(p.e.functionName(p.fn)), StatementId: aws.String(p.sid),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String(p.principal), SourceArn: aws.String(src)}
	if p.sourceAccount {
		in.SourceAccount = aws.String(p.e.account)
	}
	_, err = p.e.lambda.AddPermission(ctx, in)
	return err
}

func (p *permissionResource) inspect(ctx context.Context) (presence, error) {
	sts, err := p.e.functionPolicy(ctx, p.fn)
	if err != nil {
		return presence{}, err
	}
	for _, st := range sts {
		if st.Sid == p.sid {
			return presence{exists: true, tagless: true}, nil
		}
	}
	return presence{}, nil
}

func (p *permissionResource) remove(ctx context.Context) error {
	_, err := p.e.lambda.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(p.e.functionName(p.fn)),
		StatementId: aws.String(p.sid)})
	if isNotFound(err) {
		return nil
	}
	return err
}

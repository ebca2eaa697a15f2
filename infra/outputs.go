package infra

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// Outputs are what clients and runners of a deployed stack need. Fields of
// resources that do not exist are empty.
type Outputs struct {
	Stack  string `json:"stack"`
	Target string `json:"target"`
	Region string `json:"region"`
	Bucket string `json:"bucket"`
	// Store is the functions' archive store (RUNFLEET_STORE of the sweep).
	Store string `json:"store"`
	// ReleaseStore is the store URL runners and `workflow publish` use
	// (--store / RUNFLEET_STORE): releases live under its releases/.
	ReleaseStore        string `json:"release_store"`
	APIURL              string `json:"api_url,omitempty"`
	SubmitFunctionARN   string `json:"submit_function_arn,omitempty"`
	SweepFunctionARN    string `json:"sweep_function_arn,omitempty"`
	FunctionsRoleARN    string `json:"functions_role_arn,omitempty"`
	SchedulerRoleARN    string `json:"scheduler_role_arn,omitempty"`
	RunnerReadPolicyARN string `json:"runner_read_policy_arn,omitempty"`
}

// Outputs reads the deployed stack's addresses and ARNs.
func (e *Engine) Outputs(ctx context.Context) (Outputs, error) {
	s := e.stack
	o := Outputs{Stack: s.Name, Target: s.Target, Region: e.region, Bucket: s.Bucket.Name,
		Store:        "s3://" + s.Bucket.Name + "/" + trimSlash(s.Bucket.ArchivePrefix),
		ReleaseStore: trimSlash("s3://" + s.Bucket.Name + "/" + strings.TrimSuffix(s.Bucket.ReleasesPrefix, "releases/"))}
	found, err := (&bucketResource{e: e}).exists(ctx)
	if err != nil {
		return o, fmt.Errorf("read s3 bucket %s: %w", s.Bucket.Name, err)
	}
	if !found {
		return o, fmt.Errorf("stack %s is not deployed: s3 bucket %s does not exist (run runfleet infra deploy)", s.Name, s.Bucket.Name)
	}
	if s.Target == TargetMinIO {
		return o, nil
	}
	api, err := e.findAPI(ctx)
	if err != nil {
		return o, fmt.Errorf("read http api runfleet-%s: %w", s.Name, err)
	}
	if api != nil {
		o.APIURL = aws.ToString(api.ApiEndpoint)
	}
	for _, fn := range []string{"submit", "sweep"} {
		out, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(e.functionName(fn))})
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return o, fmt.Errorf("read lambda function %s: %w", e.functionName(fn), err)
		}
		if fn == "submit" {
			o.SubmitFunctionARN = aws.ToString(out.Configuration.FunctionArn)
		} else {
			o.SweepFunctionARN = aws.ToString(out.Configuration.FunctionArn)
		}
	}
	for _, role := range []string{"functions", "scheduler"} {
		out, err := e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(e.name(role))})
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return o, fmt.Errorf("read iam role %s: %w", e.name(role), err)
		}
		if role == "functions" {
			o.FunctionsRoleARN = aws.ToString(out.Role.Arn)
		} else {
			o.SchedulerRoleARN = aws.ToString(out.Role.Arn)
		}
	}
	pol, err := e.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(e.policyARN("runner-read"))})
	if err != nil && !isNotFound(err) {
		return o, fmt.Errorf("read iam policy %s: %w", e.name("runner-read"), err)
	}
	if err == nil {
		o.RunnerReadPolicyARN = aws.ToString(pol.Policy.Arn)
	}
	return o, nil
}

func trimSlash(p string) string {
	if len(p) > 0 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}

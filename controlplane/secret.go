package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// The functions read the Redis URL, which holds Redis's password, from an
// SSM SecureString parameter or a Secrets Manager secret named by ARN,
// so that it never appears in plain text in the function's configuration.
// It is read once, when the execution environment starts.

// redisURLFromSecret reads the Redis URL from the parameter or secret
// secretARN: its value is the URL, or a JSON object whose "url" field is.
// The region is the ARN's; the endpoint is the SDK's (AWS_ENDPOINT_URL*).
// Errors name the variable and the ARN, never the value.
func redisURLFromSecret(ctx context.Context, cfg aws.Config, secretARN string) (string, error) {
	a, err := arn.Parse(secretARN)
	want := "want an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) or a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
	if err != nil {
		// The value may be the URL itself, password and all, put in the
		// wrong variable: never quote it.
		shown := fmt.Sprintf("%q", secretARN)
		if strings.Contains(secretARN, "://") || strings.Contains(secretARN, "@") {
			shown = "(a URL, not shown)"
		}
		return "", fmt.Errorf("%s %s: not an ARN: %s; a Redis URL itself goes in %s", EnvRedisURLSecret, shown, want, EnvRedisURL)
	}
	if a.Region != "" {
		cfg.Region = a.Region
	}
	var value string
	switch {
	case a.Service == "ssm" && strings.HasPrefix(a.Resource, "parameter/"):
		out, err := ssm.NewFromConfig(cfg).GetParameter(ctx, &ssm.GetParameterInput{Name: &secretARN, WithDecryption: aws.Bool(true)})
		if err != nil {
			return "", fmt.Errorf("%s: read SSM parameter %s: %w", EnvRedisURLSecret, secretARN, err)
		}
		if out.Parameter != nil {
			value = aws.ToString(out.Parameter.Value)
		}
	case a.Service == "secretsmanager" && strings.HasPrefix(a.Resource, "secret:"):
		out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &secretARN})
		if err != nil {
			return "", fmt.Errorf("%s: read secret %s: %w", EnvRedisURLSecret, secretARN, err)
		}
		if out.SecretString == nil {
			return "", fmt.Errorf("%s: secret %s holds binary data: store the Redis URL as its secret string", EnvRedisURLSecret, secretARN)
		}
		value = *out.SecretString
	default:
		return "", fmt.Errorf("%s %q: an ARN of service %s cannot hold the Redis URL: %s", EnvRedisURLSecret, secretARN, a.Service, want)
	}
	value = strings.TrimSpace(value)
	if strings.HasPrefix(value, "{") {
		// No decoding error is shown: it could quote the value.
		var obj struct {
			URL string `json:"url"`
		}
		if json.Unmarshal([]byte(value), &obj) != nil || obj.URL == "" {
			return "", fmt.Errorf(`%s: %s holds a JSON value without a string "url" field: want the Redis URL, or {"url": "rediss://..."}`, EnvRedisURLSecret, secretARN)
		}
		value = strings.TrimSpace(obj.URL)
	}
	if value == "" {
		return "", fmt.Errorf("%s: %s is empty: want the Redis URL, e.g. rediss://user:password@host:6379/0", EnvRedisURLSecret, secretARN)
	}
	return value, nil
}

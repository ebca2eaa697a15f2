// Command echofn is a Lambda function for testenv's own tests: it answers
// {"echo": payload, "env": $ECHOFN_VALUE}, prints a line on stdout per
// invocation, and fails when the payload is the string "fail".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(ctx context.Context, payload json.RawMessage) (any, error) {
		fmt.Printf("echofn invoked with %s\n", payload)
		if string(payload) == `"fail"` {
			return nil, errors.New("asked to fail")
		}
		return map[string]any{"echo": payload, "env": os.Getenv("ECHOFN_VALUE")}, nil
	})
}

package testenv

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLambda(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	bootstrap := BuildFunction(t, "./testdata/echofn")
	l := StartLambda(t, bootstrap, []string{"ECHOFN_VALUE=from-env"})

	out, err := l.Invoke(ctx, []byte(`{"n":1}`))
	require.NoError(t, err, l.LogTail())
	require.JSONEq(t, `{"echo":{"n":1},"env":"from-env"}`, string(out))

	// The emulator answers a function error with 200; Invoke makes it an
	// error again.
	out, err = l.Invoke(ctx, []byte(`"fail"`))
	var fe *FunctionError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "asked to fail", fe.Message)
	require.Equal(t, "errorString", fe.Type)
	require.Contains(t, string(out), "errorMessage")

	// The function's stdout reaches the emulator's log.
	require.Contains(t, l.Log(), `echofn invoked with {"n":1}`)

	l.Stop()
	_, err = l.Invoke(ctx, []byte(`{}`))
	require.Error(t, err, "stopped")
	_, err = net.Dial("tcp", l.Addr)
	require.Error(t, err)
}

func TestRIEPath(t *testing.T) {
	t.Setenv("RUNFLEET_RIE_BIN", "/opt/rie/aws-lambda-rie")
	p, err := RIEPath()
	require.NoError(t, err)
	require.Equal(t, "/opt/rie/aws-lambda-rie", p)

	t.Setenv("RUNFLEET_RIE_BIN", "/nonexistent/aws-lambda-rie")
	_, err = startLambda(context.Background(), t.TempDir(), "/bin/true", nil)
	require.ErrorContains(t, err, "start aws-lambda-rie")
}

func TestFunctionErrorOnlyForErrorPayloads(t *testing.T) {
	for body, want := range map[string]bool{
		`{"errorMessage":"x","errorType":"T"}`: true,
		`{"errorType":"Runtime.ExitError"}`:    true,
		`{"statusCode":200}`:                   false,
		`"errorMessage"`:                       false,
		`[1]`:                                  false,
		``:                                     false,
	} {
		fe := functionError([]byte(body))
		require.Equal(t, want, fe != nil, body)
		if want {
			require.True(t, errors.As(error(fe), new(*FunctionError)))
		}
	}
}

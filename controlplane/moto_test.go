package controlplane_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/runfleet/runfleet/internal/testenv"
)

// startMoto runs moto_server for the test and returns a config that talks to it.
func startMoto(t *testing.T) aws.Config { return testenv.NewMoto(t).Config() }

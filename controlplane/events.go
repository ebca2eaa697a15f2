package controlplane

import (
	"context"
	"errors"

	"github.com/aws/aws-lambda-go/events"
)

func (s *Server) handleS3Event(ctx context.Context, ev events.S3Event) (EventReport, error) {
	return EventReport{}, errors.New("not yet")
}

func (s *Server) handleSchedule(ctx context.Context, ev ScheduleEvent) (EventReport, error) {
	return EventReport{}, errors.New("not yet")
}

package benchtask

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/runfleet/runfleet/workflows"
)

// Log writes Lines records (default 1) to workflows.Logger(ctx) at Level
// (default INFO): "<Message> <i>" (Message defaults to "line"), padded with
// "x" to Bytes bytes when Bytes is larger, each with the attributes i and
// Attrs, plus blob (AttrBytes of "y") when AttrBytes is set. With WaitFor
// set it waits after its first record until that file exists (or its
// context ends). Then it fails with Fail as its error when Fail is set.
// Tests use it to see what task logs keep.
type Log struct {
	Lines     int            `json:"lines,omitempty"`
	Message   string         `json:"message,omitempty"`
	Bytes     int            `json:"bytes,omitempty"`
	Level     string         `json:"level,omitempty"`
	Attrs     map[string]any `json:"attrs,omitempty"`
	AttrBytes int            `json:"attr_bytes,omitempty"`
	WaitFor   string         `json:"wait_for,omitempty"`
	Fail      string         `json:"fail,omitempty"`
}

func (*Log) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Log", Version)
}
func (l *Log) Execute(ctx context.Context) error {
	level := slog.LevelInfo
	if l.Level != "" {
		if err := level.UnmarshalText([]byte(l.Level)); err != nil {
			return fmt.Errorf("log: %w", err)
		}
	}
	lines, msg := max(l.Lines, 1), l.Message
	if msg == "" {
		msg = "line"
	}
	logger := workflows.Logger(ctx)
	var attrs []any
	for k, v := range l.Attrs {
		attrs = append(attrs, slog.Any(k, v))
	}
	if l.AttrBytes > 0 {
		attrs = append(attrs, slog.String("blob", strings.Repeat("y", l.AttrBytes)))
	}
	if len(attrs) > 0 {
		logger = logger.With(attrs...)
	}
	for i := range lines {
		text := fmt.Sprintf("%s %d", msg, i)
		if pad := l.Bytes - len(text); pad > 0 {
			text += " " + strings.Repeat("x", pad-1)
		}
		logger.Log(ctx, level, text, slog.Int("i", i))
		if i == 0 && l.WaitFor != "" {
			if err := waitForFile(ctx, l.WaitFor); err != nil {
				return err
			}
		}
	}
	if l.Fail != "" {
		return errors.New(l.Fail)
	}
	return nil
}

// waitForFile polls for path until it exists or ctx ends.
func waitForFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

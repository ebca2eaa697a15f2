package workflows_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/runfleet/runfleet/examples/bench/benchtask"
	"github.com/runfleet/runfleet/workflows"
)

// Scalar is a task whose input encodes to whatever JSON it holds.
type Scalar struct{ raw string }

func (*Scalar) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Scalar", "v1.0")
}
func (*Scalar) Execute(context.Context) error { return nil }
func (s *Scalar) MarshalJSON() ([]byte, error) {
	return []byte(s.raw), nil
}

// ValueNamed names itself with a value method, which a nil *ValueNamed
// cannot call.
type ValueNamed struct{}

func (ValueNamed) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("Noop", benchtask.Version)
}
func (ValueNamed) Execute(context.Context) error { return nil }

func TestSubmitRefusesInputThatIsNotAnObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.NewRunner(b.ctx, b.cluster, append(benchtask.All(), &Scalar{})...)
	require.NoError(t, err)
	jobs := b.client.Jobs()

	// SubmitRaw's errors are the reference.
	raw := func(input string) error {
		_, err := jobs.SubmitRaw(b.ctx, workflows.SubmitRequest{Name: "x", Cluster: b.cluster,
			Task: workflows.NewTaskIdentifier("Noop", benchtask.Version), Input: json.RawMessage(input)})
		require.Error(t, err)
		return err
	}
	for _, c := range []struct {
		name string
		task workflows.Task
		same string // the SubmitRaw input refused with the same error
	}{
		{"nil pointer", (*benchtask.Noop)(nil), "null"},
		{"nil pointer with a value Identifier", (*ValueNamed)(nil), "null"},
		{"null", &Scalar{raw: "null"}, "null"},
		{"number", &Scalar{raw: "42"}, "42"},
		{"float", &Scalar{raw: "-1.5e3"}, "-1.5e3"},
		{"string", &Scalar{raw: `"x"`}, `"x"`},
		{"array", &Scalar{raw: `[1]`}, `[1]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := jobs.Submit(b.ctx, "x", b.cluster, c.task)
			require.ErrorIs(t, err, workflows.ErrInvalidInput)
			require.EqualError(t, err, raw(c.same).Error())
		})
	}

	// Nothing was written.
	list, err := jobs.List(b.ctx, workflows.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list)
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(b.ctx, "rf:{j:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "no key of any job")

	// An object still goes through.
	_, err = jobs.Submit(b.ctx, "x", b.cluster, &Scalar{raw: `{"a":1}`})
	require.NoError(t, err)
}

// BadChild submits a subtask whose input is not a JSON object and fails
// with SubmitSubtask's error.
type BadChild struct{ Kind string }

func (*BadChild) Identifier() workflows.TaskIdentifier {
	return workflows.NewTaskIdentifier("BadChild", "v1.0")
}

func (b *BadChild) Execute(ctx context.Context) error {
	var child workflows.Task = &Scalar{raw: "42"}
	if b.Kind == "nil" {
		child = (*ValueNamed)(nil)
	}
	if _, err := workflows.SubmitSubtask(ctx, &benchtask.Noop{}); err != nil {
		return err
	}
	_, err := workflows.SubmitSubtask(ctx, child)
	return err
}

func TestSubmitSubtaskRefusesInputThatIsNotAnObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, err := b.client.NewRunner(b.ctx, b.cluster, append(benchtask.All(), &Scalar{}, &BadChild{})...)
	require.NoError(t, err)
	for _, kind := range []string{"nil", "number"} {
		j, err := b.client.Jobs().Submit(b.ctx, "bad "+kind, b.cluster, &BadChild{Kind: kind})
		require.NoError(t, err)
		require.NoError(t, r.RunAll(b.ctx))
		j = b.job(t, j.ID)
		require.Equal(t, workflows.JobFailed, j.State, kind)
		tasks, err := b.client.Jobs().Tasks(b.ctx, j.ID)
		require.NoError(t, err)
		require.Len(t, tasks, 1, "%s: a failed execution commits none of its subtasks", kind)
		require.Contains(t, tasks[0].Error, "input must be a JSON object", kind)
	}
}

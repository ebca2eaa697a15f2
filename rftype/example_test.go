package rftype_test

import (
	"errors"
	"fmt"

	"github.com/runfleet/runfleet/rftype"
)

func ExampleTaskIdentifier_Parse() {
	runner, _ := rftype.TaskIdentifier{Name: "Resize", Version: "v1.5"}.Parse()
	task, _ := rftype.ParseIdentifier("Resize", "v1.3")
	fmt.Println(runner, "can run", task, runner.CanRun(task))
	fmt.Println(task, "can run", runner, task.CanRun(runner))
	// Output:
	// Resize@v1.5 can run Resize@v1.3 true
	// Resize@v1.3 can run Resize@v1.5 false
}

func ExampleValidateSlug() {
	err := rftype.ValidateSlug("cluster", "Bench_Dev")
	fmt.Println(err)
	fmt.Println(errors.Is(err, rftype.ErrInvalidSlug))
	// Output:
	// invalid cluster slug "Bench_Dev": use 1 to 100 lowercase letters, digits and dashes, starting with a letter or digit
	// true
}

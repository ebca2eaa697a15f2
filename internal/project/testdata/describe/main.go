// Command describe stands in for a release binary in tests: it implements
// describe mode by hand, as workflows.ServeReleaseModes does, and refuses to
// run otherwise. It uses only package os so that cross-compiling it is quick.
package main

import "os"

func main() {
	if os.Getenv("RUNFLEET_MODE") != "describe" {
		os.Stderr.WriteString("describe fixture: set RUNFLEET_MODE=describe\n")
		os.Exit(2)
	}
	os.Stdout.WriteString(`{"protocol":1,"tasks":[{"name":"Greet","version":"v1.0"},{"name":"Add","version":"v2.3"}]}` + "\n")
}

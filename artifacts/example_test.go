package artifacts_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/runfleet/runfleet/artifacts"
)

func Example() {
	m := artifacts.Manifest{
		FormatVersion: artifacts.FormatVersion,
		Workflow:      "hello",
		Tasks:         []artifacts.TaskID{{Name: "Greet", Version: "v1.0"}},
		Entrypoints:   map[string]string{artifacts.PlatformLinuxAMD64: "bin/hello"},
	}
	files := map[string]artifacts.File{
		"bin/hello": {Data: []byte("#!/bin/sh\necho hello\n"), Executable: true},
	}
	var buf bytes.Buffer
	id, err := artifacts.Pack(&buf, m, files)
	if err != nil {
		panic(err)
	}
	// The id is stable: the same input gives the same bytes on every machine.
	fmt.Println("release", id)

	_, priv, _ := artifacts.GenerateKey()
	pub := priv.Public()
	sig, _ := artifacts.Sign(priv, id)
	fmt.Println("verify:", artifacts.Verify([]ed25519.PublicKey{pub.(ed25519.PublicKey)}, id, sig))

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	got, err := artifacts.Unpack(context.Background(), &buf, id, filepath.Join(dir, id), artifacts.Limits{})
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Workflow, got.Entrypoints[artifacts.PlatformLinuxAMD64])
	// Output:
	// release 76cb96d2a95ec0694395fcf4b860b29b2c009f4692571974ea216ea14c9d0e7f
	// verify: <nil>
	// hello bin/hello
}

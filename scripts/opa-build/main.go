// Command opa is OPA's own command line, built from our module so that
// scripts/build-opa can pin the OPA version even when `go install` refuses it.
package main

import (
	"errors"
	"os"

	"github.com/open-policy-agent/opa/cmd"
)

func main() {
	if err := cmd.RootCommand.Execute(); err != nil {
		var exitErr *cmd.ExitError
		if errors.As(err, &exitErr) {
			os.Exit(exitErr.Exit)
		}
		os.Exit(1)
	}
}

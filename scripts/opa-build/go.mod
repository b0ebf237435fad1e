// Fallback build of OPA for scripts/build-opa, used only when
// `go install github.com/open-policy-agent/opa@<version>` fails.
// scripts/build-opa sets the required version from its OPA_VERSION and runs
// `go mod tidy` on a temporary copy; the version below is informational.
module gatekeeper.local/opa-build

go 1.26.0

require github.com/open-policy-agent/opa v1.22.2

#!/usr/bin/env bash
# Runs mptcpd's test suite: gofmt, go vet, buf lint and a check that the
# generated API code is current, then every test with the race
# detector — unit tests, and, as root, the integration tests against the real
# kernel in network namespaces they create and delete — then every benchmark
# a few times to prove it still runs. Extra arguments go to `go test`
# (e.g. -run TestUserspacePM -v).
#
# Without root the integration tests skip and say why. Under CI (CI set in
# the environment) they fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
# sudo's secure_path usually lacks Go's directory.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"

if [[ $(id -u) == 0 ]]; then
	scripts/install-deps.sh
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then
	printf 'gofmt would change:\n%s\n' "$unformatted" >&2
	exit 1
fi
go vet ./...

# The API definitions pass buf lint, and the committed generated code is
# what they generate (after a .proto change: go generate ./proto).
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
(cd proto && go tool -modfile=tools/go.mod buf lint && go tool -modfile=tools/go.mod buf generate -o "$gen")
for f in $(cd "$gen" && find . -name '*.go'); do
	if ! cmp -s "$gen/$f" "proto/$f"; then
		echo "proto/$f is stale: run go generate ./proto and commit the result" >&2
		exit 1
	fi
done

# Benchmarks first, a few iterations each, to prove they still run; the
# test run closes the output.
go test -run '^$' -bench . -benchtime 20x -count=1 -timeout 5m ./...
go test -race -count=1 -timeout 8m "$@" ./...

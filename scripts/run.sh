#!/usr/bin/env bash
# Builds mptcpd and runs it in the foreground with the default
# configuration (systemd/mptcpd.toml), managing this host's network
# namespace, or the one given with --netns NAME. Needs root (or
# CAP_NET_ADMIN). Extra arguments go to mptcpd; stop it with Ctrl-C, which
# removes the endpoints it added.
set -euo pipefail
cd "$(dirname "$0")/.."
# sudo's secure_path usually lacks Go's directory.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
bin=$(mktemp -d)/mptcpd
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/mptcpd
"$bin" --config systemd/mptcpd.toml "$@"

#!/usr/bin/env bash
# Regenerates the golden request files in this directory by recording what
# `ss -Mni` (iproute2) sends to the kernel to dump MPTCP sockets, for
# diag/netlink_test.go to compare with encodeRequest. Needs root, strace and
# iproute2 5.9+. Runs in a throw-away network namespace.
#
# Each NAME.hex holds one netlink message as sent: the 16-byte nlmsghdr
# (length, type, flags, sequence, port ID), struct inet_diag_req_v2 and the
# INET_DIAG_REQ_PROTOCOL attribute.
set -euo pipefail
cd "$(dirname "$0")"
ns="diag-golden-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT

# ss writes one sendmsg per address family, AF_INET first; each gathers the
# header and request, the attribute header and its value from three buffers.
all=$(ip netns exec "$ns" strace -qq -e trace=sendmsg -e write=all ss -Mni 2>&1 >/dev/null |
	awk '/^ \| [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f] / {
		for (i = 3; i <= 18 && $i ~ /^[0-9a-f][0-9a-f]$/; i++) printf "%s", $i }')
# 80 bytes (160 hex digits) per request.
echo "${all:0:160}" >mptcp_v4.hex
echo "${all:160:160}" >mptcp_v6.hex
echo "mptcp_v4.hex, mptcp_v6.hex: ss -Mni ($(ss -V))"

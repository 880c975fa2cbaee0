#!/usr/bin/env bash
# Regenerates the golden request files in this directory by recording what
# `ip mptcp` (iproute2) sends to the kernel for the same requests that
# genl/golden_test.go encodes. Needs root, strace and iproute2. Runs in a
# throw-away network namespace; the host's own MPTCP settings are untouched.
#
# Each NAME.hex holds one netlink message as sent: the 16-byte nlmsghdr
# (length, type, flags, sequence, port ID) followed by the generic-netlink
# header and attributes.
set -euo pipefail
cd "$(dirname "$0")"
ns="golden-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip -n "$ns" link add d0 type veth peer name d1
ip -n "$ns" link set d0 up

# capture NAME ARGS...: record the last netlink message that `ip mptcp ARGS`
# writes (the first ones resolve the family and interface names).
capture() {
	local name=$1
	shift
	local all
	all=$(ip netns exec "$ns" strace -qq -e trace=sendmsg,sendto -e write=all \
		-e raw=sendmsg,sendto ip mptcp "$@" 2>&1 >/dev/null |
		awk '/^ \| [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f] / {
			for (i = 3; i <= 18 && $i ~ /^[0-9a-f][0-9a-f]$/; i++) printf "%s", $i }') || true
	# Walk the netlink messages written and keep the last mptcp_pm request:
	# not the controller (type 0x0010), generic-netlink version 1, command 1..11.
	local off=0 keep="" len type cmd ver
	while ((off + 40 <= ${#all})); do
		len=$((16#${all:off+6:2}${all:off+4:2}${all:off+2:2}${all:off:2}))
		type=${all:off+10:2}${all:off+8:2}
		cmd=$((16#${all:off+32:2}))
		ver=$((16#${all:off+34:2}))
		if [[ $type != 0010 && $ver == 1 && $cmd -ge 1 && $cmd -le 11 ]]; then
			keep=${all:off:len*2}
		fi
		((len > 0)) || break
		off=$((off + len * 2))
	done
	echo "$keep" >"$name.hex"
	echo "$name: ip mptcp $*"
}

capture add_v4_plain endpoint add 192.0.2.1
capture add_v4_full endpoint add 192.0.2.1 id 3 signal port 8080 dev d0
capture add_v6_flags endpoint add 2001:db8::1 id 7 subflow backup fullmesh
capture delete_id endpoint delete id 3
capture delete_id0_addr endpoint delete id 0 192.0.2.9
capture get_id endpoint show id 3
capture dump endpoint show
capture flush endpoint flush
capture change_id_backup endpoint change id 3 backup
capture change_addr_nobackup endpoint change 192.0.2.1 nobackup
capture change_addr_port_fullmesh endpoint change 2001:db8::1 port 8080 fullmesh
capture limits_set limits set subflows 4 add_addr_accepted 2
capture limits_get limits show

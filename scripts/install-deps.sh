#!/usr/bin/env bash
# Installs the Debian packages mptcpd's tests and tools need and the machine
# lacks: iproute2 (ip, to build test hosts and cross-check the kernel),
# util-linux, nftables (nft, to cut paths in the tests), curl (an
# unmodified SOCKS5 client for the socks5 tests), systemd (systemd-analyze,
# to verify the unit), systemd-container (systemd-nspawn, to run the unit
# under a real systemd in a container) and dbus-daemon (a private bus for
# the NetworkManager tests). Needs root; does nothing when everything is
# present.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)

if ((${#need[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "missing packages: ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
	exit 1
fi
echo "installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"

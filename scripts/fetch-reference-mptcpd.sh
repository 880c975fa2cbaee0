#!/usr/bin/env bash
# Fetches Debian's reference C mptcpd (the daemon and its plugins) for the
# benchmarks, WITHOUT installing the mptcpd package: installing it would
# enable and start mptcp.service in the host's own namespace. Only its
# library dependencies are installed with apt-get (libell0 and libmptcpd3,
# plain shared libraries without services); the mptcpd and mptcpd-plugins
# packages are downloaded with `apt-get download` and unpacked with
# `dpkg-deb -x` into a cache directory.
#
# Usage: scripts/fetch-reference-mptcpd.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/mptcpd-reference.
#
# Prints the path of the unpacked tree on standard output (everything else
# goes to standard error); the daemon is then TREE/usr/libexec/mptcpd and
# its plugins are in TREE/usr/lib/<multiarch>/mptcpd. Does nothing but print
# the path when the tree is already there and the libraries are installed.
set -euo pipefail

cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mptcpd-reference}
tree=$cache/root
# The daemon itself, and the package holding the addr_adv plugin.
packages=(mptcpd mptcpd-plugins)
# Its shared libraries, installed system-wide (see `apt-cache depends mptcpd`).
libraries=(libell0 libmptcpd3)

log() { printf 'fetch-reference-mptcpd: %s\n' "$*" >&2; }

for tool in apt-get apt-cache dpkg-deb dpkg-query; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		log "needs $tool (a Debian or Ubuntu system)"
		exit 1
	fi
done

export DEBIAN_FRONTEND=noninteractive
updated=no
update_once() {
	if [[ $updated == no ]]; then
		log "apt-get update"
		apt-get update -qq >&2
		updated=yes
	fi
}

missing=()
for lib in "${libraries[@]}"; do
	if [[ $(dpkg-query -W -f '${Status}' "$lib" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$lib")
	fi
done
if ((${#missing[@]} > 0)); then
	if [[ $(id -u) != 0 ]]; then
		log "missing libraries ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
		exit 1
	fi
	log "installing ${missing[*]}"
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
		update_once
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	fi
fi

if [[ -x $tree/usr/libexec/mptcpd ]] && compgen -G "$tree/usr/lib/*/mptcpd/addr_adv.so" >/dev/null; then
	printf '%s\n' "$tree"
	exit 0
fi

# The package lists must know mptcpd; a fresh container has none.
if ! apt-cache show mptcpd >/dev/null 2>&1; then
	if [[ $(id -u) != 0 ]]; then
		log "apt-cache does not know mptcpd and updating the package lists needs root"
		exit 1
	fi
	update_once
	if ! apt-cache show mptcpd >/dev/null 2>&1; then
		log "no package mptcpd in this system's repositories"
		exit 1
	fi
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/download.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download drops privileges to _apt when it can write the directory.
chmod 0755 "$work"
if getent passwd _apt >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
	chown _apt "$work"
fi
log "downloading ${packages[*]} into $cache"
(cd "$work" && apt-get download -q "${packages[@]}" >&2)

# Unpack into a fresh directory and move it into place, so that an
# interrupted run never leaves a half-unpacked tree that looks complete.
mkdir "$work/root"
for deb in "$work"/*.deb; do
	dpkg-deb -x "$deb" "$work/root"
done
if [[ ! -x $work/root/usr/libexec/mptcpd ]]; then
	log "the mptcpd package holds no usr/libexec/mptcpd"
	exit 1
fi
mv "$work"/*.deb "$cache"/
rm -rf "$tree"
mv "$work/root" "$tree"
log "unpacked into $tree"
printf '%s\n' "$tree"

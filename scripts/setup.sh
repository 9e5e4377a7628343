#!/usr/bin/env bash
# Install what fedguard needs to build, test and run on Debian 12, and make
# the kernel interfaces it uses available (bpffs). Idempotent; run as root.
set -euo pipefail

packages=(
	gcc clang pkg-config meson ninja-build
	libbpf-dev bpftool libelf-dev zlib1g-dev
	libssl-dev libnl-3-dev libnl-route-3-dev
	libjson-c-dev libyaml-dev libcurl4-openssl-dev
	libcriterion-dev
	etcd-server
	iproute2 util-linux procps tcpdump openssl
	binutils systemd
)

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: must run as root (installs packages, mounts bpffs)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js and the Kubernetes schema validators of tests/k8s (tests/test_deploy.c).
# The machine's own node is used when there is one; Debian's otherwise.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "setup.sh: installing nodejs npm"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
k8s=$(dirname "$0")/../tests/k8s
if [ ! -f "$k8s/node_modules/.package-lock.json" ] ||
	[ "$k8s/package-lock.json" -nt "$k8s/node_modules/.package-lock.json" ]; then
	echo "setup.sh: npm ci in tests/k8s"
	npm ci --prefix "$k8s" --no-audit --no-fund --loglevel=error >/dev/null
fi

# bpffs: fedguardd mounts it too, but tests and bpftool expect it now.
if ! mountpoint -q /sys/fs/bpf || [ "$(stat -f -c %T /sys/fs/bpf)" != "bpf_fs" ]; then
	mount -t bpf bpf /sys/fs/bpf
fi

# cgroup v2 must exist in one of the two layouts.
if ! grep -q " - cgroup2 " /proc/self/mountinfo; then
	echo "setup.sh: no cgroup v2 mount found (need /sys/fs/cgroup or /sys/fs/cgroup/unified)" >&2
	exit 1
fi

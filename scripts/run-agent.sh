#!/usr/bin/env bash
# Set up, build and run fedguardd in the foreground on a managed cgroup
# subtree "fedguard" under the cgroup2 mount (created if missing). Extra
# arguments go to fedguardd (e.g. --iface eth0). Ctrl-C stops the agent and
# leaves enforcement in place; `build/agent/fedguardd --uninstall` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null

cg2=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
mkdir -p "$cg2/fedguard"
echo "run-agent: managing $cg2/fedguard; put workloads in cgroups below it"
exec build/agent/fedguardd --instance default --cgroup "$cg2/fedguard" "$@"

#!/usr/bin/env bash
# Run fedguard's benchmarks (issue 7) and print one table: every figure with the baseline
# measured in the same run, their ratio, and the issue's target, met or missed.
#
#   sudo bash scripts/bench.sh [--quick] [--only NAME]...
#
# NAME: prog (3, BPF_PROG_TEST_RUN per packet), net (1 per request, 2 per connection,
# 6 policy, 7 footprint), quarantine (4: one node and a federation of four agents),
# auth (5, handshakes and time to first byte), tunnel (issue 8 item 6: the encrypted
# transport against the direct path).
# --quick: short runs that show every benchmark works; its figures are not worth quoting.
# Installs what the benchmarks need beyond the tests (iptables, nftables), builds, runs.
# Figures are medians over interleaved rounds; docs/BENCHMARKS.md explains each.
# FG_BENCH_BUILD=DIR builds and runs in DIR instead of build/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	sed -n '4,14p' "$0" | sed 's/^# \{0,1\}//'
	exit "$1"
}

quick=()
only=()
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=(--quick) ;;
	--only)
		[ $# -ge 2 ] || usage 2
		only+=("$2")
		shift
		;;
	-h | --help) usage 0 ;;
	*)
		echo "bench.sh: unknown argument '$1'" >&2
		usage 2
		;;
	esac
	shift
done

all=(prog quarantine auth tunnel net)
for n in "${only[@]}"; do
	[[ " ${all[*]} " == *" $n "* ]] || { echo "bench.sh: no benchmark '$n' (${all[*]})" >&2; exit 2; }
done
[ ${#only[@]} -gt 0 ] || only=("${all[@]}")

if [ "$(id -u)" -ne 0 ]; then
	echo "bench.sh: must run as root (namespaces, cgroups, BPF)" >&2
	exit 1
fi

# --- what the benchmarks need beyond the tests -----------------------------------------------------

bash scripts/setup.sh
packages=(iptables nftables openssl util-linux)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "bench.sh: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>/dev/null
fi

# --- build --------------------------------------------------------------------------------------

build=${FG_BENCH_BUILD:-build}
if [ -f "$build/build.ninja" ]; then
	meson configure "$build" -Db_sanitize=none >/dev/null
else
	meson setup "$build" >/dev/null
fi
meson compile -C "$build" >/dev/null

# --- run ---------------------------------------------------------------------------------------

results=$build/bench-results.txt
logs=$build/bench-logs
mkdir -p "$logs"
: >"$results"
started=$(date +%s)
status=0

run() {
	local name=$1; shift
	echo "bench.sh: $name ..." >&2
	# the results on stdout, everything else to the log; a failing benchmark fails the run
	# but not the others
	if ! timeout 1800 "$@" 2>"$logs/$name.log" | tee -a "$results" |
		{ grep -v '^@result' >&2 || true; }; then
		echo "bench.sh: $name failed; its log: $logs/$name.log" >&2
		tail -n 20 "$logs/$name.log" >&2
		status=1
	fi
}

for n in "${only[@]}"; do
	case $n in
	prog) run prog "$build/bench/bench_prog" "${quick[@]}" ;;
	net) run net bash bench/net.sh "$build" "${quick[@]}" ;;
	quarantine)
		run quarantine env FEDGUARDD="$build/agent/fedguardd" \
			FEDGUARDCTL="$build/tools/fedguardctl" FEDGUARD_CA="$build/tools/fedguard-ca" \
			"$build/bench/bench_quarantine" "${quick[@]}"
		;;
	auth)
		run auth "$build/bench/bench_auth" "${quick[@]}"
		run ttfb env FEDGUARDD="$build/agent/fedguardd" "$build/bench/bench_ttfb" "${quick[@]}"
		;;
	tunnel)
		run tunnel env FEDGUARDD="$build/agent/fedguardd" \
			FEDGUARDCTL="$build/tools/fedguardctl" FEDGUARD_CA="$build/tools/fedguard-ca" \
			"$build/bench/bench_tunnel" "${quick[@]}"
		;;
	esac
done

# --- the table ------------------------------------------------------------------------------------

echo
echo "fedguard benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -r)," \
	"$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1))," \
	"${quick[*]:-full} run, $(($(date +%s) - started)) s"
bash bench/table.sh <"$results"
exit "$status"

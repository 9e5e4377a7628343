#!/usr/bin/env bash
# Set up, build and run every test: the full suite (unit and kernel tests,
# which need root and BPF), then the unit tests again under ASan+UBSan.
# Prints one closing line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

build() {
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	meson compile -C "$dir"
}

# Criterion prints "Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N"; a crashed
# test is counted in Failing too (a timed-out one only there).
count() {
	grep -ho "Synthesis: Tested: [0-9]* | Passing: [0-9]* | Failing: [0-9]* | Crashing: [0-9]*" \
		"$1/meson-logs/testlog.txt" |
		awk -F'[:|]' '{ p += $5; f += $7 } END { print p + 0, f + 0 }'
}

# The failed and crashed tests of a run, each with its first messages, so that the end of
# the output (all a CI summary may keep) names them.
failures() {
	awk '/Assertion Failed|Unexpected signal|Warning! The test/ { print; more = 2; next }
		more > 0 && !/^\[----\] *$/ { print; more--; next }
		/^\[FAIL\]/ { print }
		/^test:/ { name = $0 }
		/^result:/ && !/exit status (0|77)$/ { print name " -> " $0 }' \
		"$1/meson-logs/testlog.txt" | head -n 120
}

status=0
build build
meson test -C build --print-errorlogs || status=1
read -r pass fail < <(count build)

build build-asan -Db_sanitize=address,undefined -Db_lundef=false
# tests/lsan.supp: leaks inside Criterion's own runner are not ours.
LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
	meson test -C build-asan --suite unit --print-errorlogs || status=1
read -r apass afail < <(count build-asan)

for dir in build build-asan; do
	if [ -n "$(failures "$dir")" ]; then
		echo "--- what failed in $dir (full log: $dir/meson-logs/testlog.txt):"
		failures "$dir"
	fi
done
echo "tests: $((pass + apass)) passed, $((fail + afail)) failed"
exit "$status"

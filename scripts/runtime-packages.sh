#!/usr/bin/env bash
# Prints the Debian packages holding the shared libraries that BINARY...
# link directly (their NEEDED entries, resolved as ldd resolves them), one a
# line, sorted: what the image's runtime stage must install
# (deploy/Containerfile; tests/test_deploy.c compares the two).
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: runtime-packages.sh BINARY..." >&2
	exit 2
fi

# dpkg records a library under /lib or /usr/lib (merged /usr): try both.
owner() {
	local p
	for p in "$1" "$(readlink -f "$1")" "/usr${1#/usr}" "${1#/usr}"; do
		if dpkg -S "$p" 2>/dev/null | head -n 1 | cut -d: -f1; then
			return 0
		fi
	done
	echo "runtime-packages.sh: no package holds '$1'" >&2
	return 1
}

for bin in "$@"; do
	readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r so; do
		path=$(ldd "$bin" | awk -v so="$so" '
			$1 == so && $2 == "=>" { print $3 }
			$1 ~ "/" so "$" { print $1 }' | head -n 1)
		[ -n "$path" ] || { echo "runtime-packages.sh: $bin: '$so' not found" >&2; exit 1; }
		owner "$path"
	done
done | sort -u

#!/usr/bin/env bash
# The benchmarks' table, from "@result|SECTION|FIGURE|VALUE|UNIT|BASELINE|TARGET" lines on
# stdin (other lines are ignored). RATIO is VALUE / BASELINE. TARGET is "-", or
# "ratio<=X", "ratio>=X", "value<X", "value<=X" (in UNIT): judged met or missed; a VALUE of
# "-" is reported as not measured.
set -euo pipefail

grep '^@result|' | sort -t'|' -k2,2 -s | awk -F'|' '
function num(x) { return x ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
function judge(target, value, ratio,   op, lim, x) {
	if (target == "-" || target == "") return ""
	if (!num(value)) return "not measured"
	if (match(target, /(<=|>=|<|>)/) == 0) return "?"
	op = substr(target, RSTART, RLENGTH)
	lim = substr(target, RSTART + RLENGTH) + 0
	x = substr(target, 1, RSTART - 1) == "ratio" ? ratio : value
	if (x == "") return "?"
	if (op == "<=") return x <= lim ? "met" : "MISSED"
	if (op == ">=") return x >= lim ? "met" : "MISSED"
	if (op == "<") return x < lim ? "met" : "MISSED"
	return x > lim ? "met" : "MISSED"
}
function fmt(x) { return num(x) ? sprintf(x >= 100 ? "%.0f" : x >= 0.1 || x == 0 ? "%.2f" : "%.2g", x) : x }
{
	sec = $2; fig = $3; val = $4; unit = $5; base = $6; tgt = $7
	ratio = ""
	if (num(val) && num(base) && base + 0 != 0) ratio = sprintf("%.3f", val / base)
	if (sec != last) { printf "\n%s\n", sec; last = sec }
	printf "  %-74s %10s %-6s %10s %7s  %-12s %s\n", fig, fmt(val), unit, fmt(base),
		ratio, tgt == "-" ? "" : tgt, judge(tgt, val, ratio)
}
BEGIN {
	printf "  %-74s %10s %-6s %10s %7s  %-12s %s\n", "figure", "value", "unit", "baseline",
		"ratio", "target", "result"
}'

#!/usr/bin/env bash
# Per request (issue 7 item 1), per connection (2) and footprint (7).
#
#   bench/net.sh BUILD_DIR [--quick]
#
# Four identical worlds, built side by side and measured in alternation:
#
#   client netns (10.240.0.2) -- node netns (10.240.0.1 | 10.241.0.1) -- server netns (10.241.0.2)
#
#   none  nothing enforces
#   fg    fedguardd runs in the node namespace: its cgroup hooks judge the client's and the
#         server's sockets (both registered workloads of the node). No TC perimeter: it belongs
#         on a node's uplink, and here both workloads are on one node (the node's veths to its
#         workloads would make their own addresses arrive "from outside"); item 3 measures the
#         TC programs' cost per packet
#   ipt   iptables in the node namespace: FORWARD policy DROP, conntrack ESTABLISHED first,
#         then one ACCEPT rule per fedguard policy entry (the benchmark's own pair last)
#   nft   nftables in the node namespace: the same, the entries as one concatenated set
#
# fedguard's policy is applied as an operator would: workloads and endpoints registered over
# the control socket (fedguardctl; bench_ctl for thousands of endpoints), one YAML document
# through `fedguardctl policy apply`. Sizes: 10 identities and ~100 entries, 1k and ~10k, 10k
# and ~100k. The ipt and nft rules are the same entries, address to address.
#
# Prints "@result|SECTION|FIGURE|VALUE|UNIT|BASELINE|TARGET" lines (scripts/bench.sh makes the
# table). Everything created is removed on exit, also on failure or Ctrl-C.
set -euo pipefail

build=$(realpath "$1")
quick=0
[ "${2:-}" = "--quick" ] && quick=1

fgd=$build/agent/fedguardd
ctl=$build/tools/fedguardctl
net=$build/bench/bench_net
bctl=$build/bench/bench_ctl

if [ "$quick" = 1 ]; then
	rounds=3 secs=0.5 sizes="10:100" idle_s=2 load_s=2
else
	rounds=7 secs=1.5 sizes="10:100 1000:10000 10000:100000" idle_s=10 load_s=10
fi
# FG_BENCH_NET_SIZES="IDS:ENTRIES ...": other sizes, e.g. one of the full run's, to rerun it alone
sizes=${FG_BENCH_NET_SIZES:-$sizes}

id=$$
bench_cpu=$(($(nproc) - 1))
tmp=/tmp/fgbench-net$id
cg2=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
cg=$cg2/fgbench$id
inst=fgb$id
variants="none fg ipt nft"
CLIENT=10.240.0.2 SERVER=10.241.0.2 PORT=8080
pids=()
agent=0

log() { echo "net: $*" >&2; }
ns() { echo "fb$1$2$id"; }	# ns VARIANT ROLE(c|n|s)

cleanup() {
	set +e
	# every process of the benchmark's cgroups (servers, clients), then their shells
	[ -e "$cg/cgroup.kill" ] && echo 1 >"$cg/cgroup.kill"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	if [ "$agent" -gt 0 ]; then kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null; fi
	"$fgd" --instance "$inst" --uninstall -q 2>/dev/null
	for v in $variants; do
		for r in c n s; do ip netns del "$(ns "$v" $r)" 2>/dev/null; done
	done
	for v in $variants; do
		for r in client server; do
			for _ in $(seq 50); do
				[ -d "$cg/$v/$r" ] || break
				rmdir "$cg/$v/$r" 2>/dev/null && break
				sleep 0.1
			done
		done
		rmdir "$cg/$v" 2>/dev/null
	done
	rmdir "$cg" 2>/dev/null
	[ -n "${FG_BENCH_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the worlds ---------------------------------------------------------------------------------

topo() {
	local v=$1 c n s
	c=$(ns "$v" c) n=$(ns "$v" n) s=$(ns "$v" s)
	ip netns add "$c" && ip netns add "$n" && ip netns add "$s"
	ip link add nc0 address 02:fb:00:00:01:01 netns "$n" type veth \
		peer name c0 address 02:fb:00:00:01:02 netns "$c"
	ip link add ns0 address 02:fb:00:00:02:01 netns "$n" type veth \
		peer name s0 address 02:fb:00:00:02:02 netns "$s"
	ip -n "$n" addr add 10.240.0.1/24 dev nc0
	ip -n "$n" addr add 10.241.0.1/24 dev ns0
	ip -n "$c" addr add $CLIENT/24 dev c0
	ip -n "$s" addr add $SERVER/24 dev s0
	for x in "$c:c0" "$n:nc0" "$n:ns0" "$s:s0"; do
		ip -n "${x%%:*}" link set "${x##*:}" up
		ip -n "${x%%:*}" link set lo up
	done
	ip -n "$c" route add default via 10.240.0.1
	ip -n "$s" route add default via 10.241.0.1
	# static neighbours: address resolution is not what is measured
	ip -n "$c" neigh add 10.240.0.1 lladdr 02:fb:00:00:01:01 dev c0 nud permanent
	ip -n "$n" neigh add $CLIENT lladdr 02:fb:00:00:01:02 dev nc0 nud permanent
	ip -n "$n" neigh add $SERVER lladdr 02:fb:00:00:02:02 dev ns0 nud permanent
	ip -n "$s" neigh add 10.241.0.1 lladdr 02:fb:00:00:02:01 dev s0 nud permanent
	nsenter --net=/var/run/netns/"$n" sysctl -qw net.ipv4.ip_forward=1
	mkdir -p "$cg/$v/client" "$cg/$v/server"
}

# in VARIANT ROLE(client|server) CMD...: CMD as a process of that cgroup and namespace, on the
# benchmark CPU. Client and server share one CPU: a ping-pong between two CPUs costs a wake-up
# from idle on every turn (tens of microseconds on this VM, and bimodal), which would drown
# what is measured; on one CPU every request is the path's own work, back to back.
in_place() {
	local v=$1 role=$2; shift 2
	bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec nsenter --net="$@"' _ \
		"$cg/$v/$role" /var/run/netns/"$(ns "$v" "${role:0:1}")" taskset -c "$bench_cpu" "$@"
}

serve() {
	local v=$1 out=$tmp/serve-$1
	in_place "$v" server "$net" serve $PORT >"$out" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do grep -q ready "$out" 2>/dev/null && return 0; sleep 0.05; done
	log "server of $v did not start: $(cat "$out")"
	return 1
}

agent_start() {
	local n logf=$tmp/agent.log
	n=$(ns fg n)
	nsenter --net=/var/run/netns/"$n" "$fgd" --instance "$inst" --cgroup "$cg/fg" \
		--state-dir "$tmp/state" --flow-log none 2>"$logf" &
	agent=$!
	for _ in $(seq 600); do
		grep -q ready "$logf" && return 0
		kill -0 "$agent" 2>/dev/null || break
		sleep 0.1
	done
	log "fedguardd did not start: $(tail -5 "$logf")"
	return 1
}

fctl() { "$ctl" --instance "$inst" "$@"; }

register_workloads() {
	fctl workload add --spiffe-id spiffe://bench.test/local/client --cgroup "$cg/fg/client" \
		--ip $CLIENT --netns /var/run/netns/"$(ns fg c)" >/dev/null
	fctl workload add --spiffe-id spiffe://bench.test/local/server --cgroup "$cg/fg/server" \
		--ip $SERVER --netns /var/run/netns/"$(ns fg s)" >/dev/null
}

# --- one size: identities, entries, rules ---------------------------------------------------

# ports IDS ENTRIES: how many ports make locals x remotes x ports about ENTRIES
ports_for() { echo $(( ($2 - 2 + $1 - 2) / (2 * ($1 - 2)) )); }

remote_ip() { echo "10.250.$(($1 / 250)).$(($1 % 250 + 1))"; }

# policy_doc NPORTS VERSION [FIRST_PORT [FROM [SERVER_PORTS]]]: the benchmark's document
policy_doc() {
	local nports=$1 version=$2 first=${3:-9000} from=${4:-local/*} sports=${5:-$PORT} list=""
	for ((p = 0; p < nports; p++)); do list+="${list:+, }$((first + p))"; done
	cat <<-EOF
	version: $version
	rules:
	  - name: client-to-server
	    action: allow
	    transport: authenticated
	    from: {spiffe_id: spiffe://bench.test/local/client}
	    to: {spiffe_id: spiffe://bench.test/local/server}
	    ports: [$sports]
	    protocols: [tcp]
	  - name: locals-to-remotes
	    action: allow
	    transport: authenticated
	    from: {spiffe_id: spiffe://bench.test/$from}
	    to: {spiffe_id: spiffe://bench.test/remote/*}
	    ports: [$list]
	    protocols: [tcp]
	EOF
}

# the entries as address triples: "SRC DST PORT", the benchmark's own pair last
entries() {
	local remotes=$1 nports=$2
	for ((i = 0; i < remotes; i++)); do
		local r
		r=$(remote_ip "$i")
		for ((p = 0; p < nports; p++)); do
			echo "$CLIENT $r $((9000 + p))"
			echo "$SERVER $r $((9000 + p))"
		done
	done
	echo "$CLIENT $SERVER $PORT"
}

iptables_load() {
	local file=$tmp/iptables.rules
	{
		echo "*filter"
		echo ":INPUT ACCEPT [0:0]"
		echo ":FORWARD DROP [0:0]"
		echo ":OUTPUT ACCEPT [0:0]"
		echo "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
		awk '{ printf "-A FORWARD -s %s/32 -d %s/32 -p tcp -m tcp --dport %s -j ACCEPT\n",
			$1, $2, $3 }' "$tmp/entries"
		echo "COMMIT"
	} >"$file"
	nsenter --net=/var/run/netns/"$(ns ipt n)" "$iptables_restore" <"$file"
}

nft_load() {
	local file=$tmp/nft.rules
	{
		echo "table inet fgbench"
		echo "delete table inet fgbench"
		echo "table inet fgbench {"
		echo "  set allowed {"
		echo "    type ipv4_addr . ipv4_addr . inet_service"
		echo "    flags constant"
		printf "    elements = { "
		awk '{ printf "%s%s . %s . %s", (NR > 1 ? ", " : ""), $1, $2, $3 }' "$tmp/entries"
		echo " }"
		echo "  }"
		echo "  chain forward {"
		echo "    type filter hook forward priority 0; policy drop;"
		echo "    ct state established,related accept"
		echo "    ip saddr . ip daddr . tcp dport @allowed accept"
		echo "  }"
		echo "}"
	} >"$file"
	nsenter --net=/var/run/netns/"$(ns nft n)" nft -f "$file"
}

registered=0
version=0

size_setup() {
	local ids=$1 want=$2 remotes nports t0 out
	remotes=$((ids - 2))
	nports=$(ports_for "$ids" "$want")
	if [ "$remotes" -gt "$registered" ]; then
		# every registration recompiles the policy in force against the identities: with the
		# locals-to-remotes rule in force each endpoint.add would compile the whole growing set
		# (62 ms each at 1,000 identities and 10k entries, measured). Register under the
		# client-to-server rule alone, as an operator loading a node would, then apply.
		version=$((version + 1))
		policy_doc 1 "$version" 9000 "local/none" >"$tmp/policy.yaml"
		fctl policy apply "$tmp/policy.yaml" >/dev/null
		out=$("$bctl" "$inst" endpoints "$registered" $((remotes - registered)))
		log "$out"
		echo "$out" >"$tmp/register-$ids"
		registered=$remotes
	fi
	version=$((version + 1))
	policy_doc "$nports" "$version" >"$tmp/policy.yaml"
	out=$(fctl policy apply "$tmp/policy.yaml")
	log "$out"
	fg_entries=$(sed -n 's/.*: \([0-9]*\) entries.*/\1/p' <<<"$out")
	entries "$remotes" "$nports" >"$tmp/entries"
	t0=$(date +%s.%N)
	iptables_load
	log "iptables: $(wc -l <"$tmp/entries") rules loaded in $(calc "$(date +%s.%N) - $t0") s"
	t0=$(date +%s.%N)
	nft_load
	log "nftables: set of $(wc -l <"$tmp/entries") loaded in $(calc "$(date +%s.%N) - $t0") s"
}

# --- measuring --------------------------------------------------------------------------------

# measure MODE(rr|crr) LABEL: ROUNDS rounds, each variant once per round, the order rotated
measure() {
	local mode=$1 label=$2 order k line
	for v in $variants; do : >"$tmp/$mode-$label-$v"; done
	for ((k = 0; k < rounds; k++)); do
		order=$(echo $variants | tr ' ' '\n' | awk -v k=$k '{ a[NR-1]=$0 } END {
			for (i = 0; i < NR; i++) print a[(i + k) % NR] }')
		for v in $order; do
			line=$(in_place "$v" client "$net" "$mode" $SERVER $PORT "$secs")
			echo "$line" >>"$tmp/$mode-$label-$v"
			case $line in *" errors=0") ;; *) log "$mode $v: $line" ;; esac
		done
	done
}

# median FILE FIELD: the median of FIELD=VALUE over the lines of FILE
median() {
	sed -n "s/.*\b$2=\([0-9.]*\).*/\1/p" "$1" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

calc() { awk "BEGIN { printf \"%.2f\\n\", $1 }"; }

result() { echo "@result|$1|$2|$3|$4|$5|$6"; }

report_size() {
	local label=$1 ids=$2 entries=$3 judged=0 base tag t
	tag="$ids ids, $entries entries"
	# the issue states its targets at 100k entries; smaller sizes are shown, not judged (a quick
	# run judges its one size, as a smoke check of the table)
	if [ "$entries" -ge 99000 ] || [ "$quick" = 1 ]; then judged=1; fi
	for m in rate p50_us p99_us; do
		base=$(median "$tmp/rr-$label-none" $m)
		unit=us
		[ $m = rate ] && unit=req/s
		result "1 request" "rr none: $m" "$base" "$unit" "-" "-"
		for v in fg ipt nft; do
			t=-
			if [ "$v" = fg ] && [ $judged = 1 ]; then
				case $m in rate) t="ratio>=0.97" ;; p50_us) t="ratio<=1.03" ;; esac
			fi
			result "1 request" "rr $v ($tag): $m" "$(median "$tmp/rr-$label-$v" $m)" "$unit" \
				"$base" "$t"
		done
	done
# connect cost: microseconds per connect()+close(), from the rate
	base=$(median "$tmp/crr-$label-none" rate)
	result "2 connection" "connect+close none: per connection" \
		"$(calc "1000000 / $base")" "us" "-" "-"
	for v in fg ipt nft; do
		local r
		t=-
		[ "$v" = fg ] && [ $judged = 1 ] && t="ratio<=1.2"
		r=$(median "$tmp/crr-$label-$v" rate)
		result "2 connection" "connect+close $v ($tag): per connection" \
			"$(calc "1000000 / $r")" "us" \
			"$(calc "1000000 / $base")" "$t"
	done
}

# --- policy (item 6): compile and swap, one-rule update, kernel memory per entry -------------

memlock() {
	bpftool -j map show pinned "/sys/fs/bpf/fedguard/$inst/fg_policy" |
		sed -n 's/.*"bytes_memlock":\([0-9]*\).*/\1/p'
}

# apply_ms FILE: the wall time of `fedguardctl policy apply FILE` (its process start included)
apply_ms() {
	local t0 t1 out
	t0=$(date +%s%N)
	out=$(fctl policy apply "$1")
	t1=$(date +%s%N)
	applied=$(sed -n 's/.*: \([0-9]*\) entries (+\([0-9]*\) -\([0-9]*\)).*/\1 +\2 -\3/p' <<<"$out")
	calc "($t1 - $t0) / 1000000"
}

# policy_timing NPORTS FROM: full swaps between two documents whose entries all differ, then
# one-rule updates (the client-to-server rule gains or loses a port), alternating, medians
policy_timing() {
	local nports=$1 from=$2 n=3 floor i
	: >"$tmp/swap" && : >"$tmp/one"
	for ((i = 0; i < 2 * n; i++)); do
		version=$((version + 1))
		policy_doc "$nports" "$version" $((9000 + 100 * (i % 2))) "$from" >"$tmp/p.yaml"
		apply_ms "$tmp/p.yaml" >>"$tmp/swap"
	done
	entries_now=${applied%% *}
	for ((i = 0; i < 2 * n; i++)); do
		version=$((version + 1))
		policy_doc "$nports" "$version" 9100 "$from" "$PORT$([ $((i % 2)) = 0 ] && echo ", 8081")" \
			>"$tmp/p.yaml"
		apply_ms "$tmp/p.yaml" >>"$tmp/one"
		log "one-rule update: entries $applied"
	done
	floor=$("$build/bench/bench_prog" --floor "$entries_now")
	result "6 policy" "compile and swap $entries_now entries, $ids ids (policy apply)" \
		"$(sort -g "$tmp/swap" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" "ms" \
		"$(sed 's/.*floor_ms=\([0-9.]*\).*/\1/' <<<"$floor")" \
		"$([ "$entries_now" -ge 99000 ] && echo "value<1000" || echo -)"
	result "6 policy" "one-rule update at $entries_now entries, $ids ids (policy apply)" \
		"$(sort -g "$tmp/one" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" "ms" \
		"$(sed 's/.*one_us=\([0-9.]*\).*/\1/' <<<"$floor" | awk '{ print $1 / 1000 }')" "-"
	echo "$entries_now $(memlock)" >>"$tmp/memlock"
}

# kernel memory per entry: the slope of fg_policy's memlock between the sizes measured
memory_per_entry() {
	sort -n "$tmp/memlock" | awk 'NR == 1 { e0 = $1; m0 = $2 } { e = $1; m = $2 }
		END { if (e > e0) printf "%.1f %d %d\n", (m - m0) / (e - e0), e0, e; else print "- 0 0" }' |
		while read -r per e0 e; do
			result "6 policy" "kernel memory per fg_policy entry (memlock, $e0 to $e entries)" \
				"$per" "bytes" "-" "-"
		done
}

# --- footprint --------------------------------------------------------------------------------

rss_mib() { awk '/^VmRSS/ { printf "%.1f\n", $2 / 1024 }' /proc/"$agent"/status; }

cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$agent"/stat; }

# cpu_percent SECONDS: the agent's CPU over that long, percent of one CPU
cpu_over() {
	local t0 c0 c1 t1 hz
	hz=$(getconf CLK_TCK)
	c0=$(cpu_ticks) t0=$(date +%s.%N)
	sleep "$1"
	c1=$(cpu_ticks) t1=$(date +%s.%N)
	calc "100 * ($c1 - $c0) / $hz / ($t1 - $t0)"
}

footprint() {
	local tag=$1 out cpu
	result "7 footprint" "fedguardd RSS idle ($tag)" "$(rss_mib)" "MiB" "-" "value<=32"
	result "7 footprint" "fedguardd CPU idle ($tag)" "$(cpu_over "$idle_s")" "% CPU" "-" "-"
	in_place fg client "$net" crr $SERVER $PORT "$load_s" 1000 >"$tmp/load" &
	local loader=$!
	sleep 0.5
	cpu=$(cpu_over "$((load_s - 1))")
	wait "$loader"
	out=$(cat "$tmp/load")
	log "1k connections/s load: $out"
	result "7 footprint" "fedguardd CPU at 1k conn/s ($tag; got $(sed 's/.*rate=\([0-9]*\).*/\1/' \
		<<<"$out")/s)" "$cpu" "% CPU" "-" "-"
	result "7 footprint" "fedguardd RSS at 1k conn/s ($tag)" "$(rss_mib)" "MiB" "-" "value<=32"
}

# --- main ---------------------------------------------------------------------------------------

mkdir -p "$tmp"
log "building four worlds ($variants)"
old_ehash=$(sysctl -n net.ipv4.tcp_child_ehash_entries)
sysctl -qw net.ipv4.tcp_child_ehash_entries=1024	# own TCP tables, as ARCHITECTURE.md advises
set +e
(for v in $variants; do topo "$v" || exit 1; done)
st=$?
set -e
sysctl -qw net.ipv4.tcp_child_ehash_entries="$old_ehash"
[ $st = 0 ]
for v in $variants; do serve "$v"; done
# the classic x_tables engine (linear rules) when the kernel has it; iptables-nft otherwise
iptables_restore=iptables-restore
if nsenter --net=/var/run/netns/"$(ns ipt n)" iptables-legacy -L -n >/dev/null 2>&1; then
	iptables_restore=iptables-legacy-restore
fi
agent_start
register_workloads
log "iptables: $iptables_restore ($("${iptables_restore%-restore}" --version))"

first=1
for s in $sizes; do
	ids=${s%%:*} want=${s##*:}
	log "size: $ids identities, about $want entries"
	size_setup "$ids" "$want"
	[ "$first" = 1 ] && footprint "$ids ids, $fg_entries entries"
	first=0
	measure rr "$ids"
	measure crr "$ids"
	report_size "$ids" "$ids" "$fg_entries"
	if [ "$quick" = 1 ]; then
		policy_timing "$(ports_for "$ids" "$want")" "local/*"
	elif [ "$ids" = 1000 ]; then
		policy_timing 1 "local/client"	# 998 remotes, one port: 1,000 entries
		# 2 x 998 x 50: 100k entries on this size's identities, so that the 100k swap is
		# measured even when the 10k size is not run (FG_BENCH_NET_SIZES)
		policy_timing 50 "local/*"
	elif [ "$ids" = 10000 ]; then
		policy_timing 5 "local/*"	# 2 x 9,998 x 5: 100k entries
	fi
	if [ -f "$tmp/register-$ids" ]; then
		result "6 policy" "endpoint.add with $registered known (mean of last 100)" \
			"$(sed -n 's/.*last_ms=\([0-9.]*\).*/\1/p' "$tmp/register-$ids")" "ms" "-" "-"
	fi
done
[ "$quick" = 1 ] || footprint "$ids ids, $fg_entries entries"
memory_per_entry

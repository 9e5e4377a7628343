#!/usr/bin/env bash
# The federated demo: two meshes, shop.example and bank.example, each with
# its own CA, policy key and etcd, two nodes each, on this machine in
# network namespaces; a workload behind each node. The meshes federate
# through their bundle endpoints and links between their agents, and sign
# their own policies. The demo narrates allowed and denied calls inside and
# across the meshes, captures the wire between the nodes to show that
# their calls cross it encrypted (all but one, which policy lets take the
# direct path with authentication alone, to compare), quarantines a
# workload and shows its connections cut on every node, and removes
# everything it made. It exits 1 when a result differs from the story it
# tells (tests/test_demo.c runs it so). FG_BUILD=DIR uses that build.
#
#   sudo bash scripts/demo.sh          run it, then clean up
#   sudo bash scripts/demo.sh --keep   leave it running to explore
#   sudo bash scripts/demo.sh --down   remove a demo left by --keep
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

usage() {
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

keep=0
case "${1:-}" in
"") ;;
--keep) keep=1 ;;
--down) down_only=1 ;;
-h | --help) usage; exit 0 ;;
*) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: must run as root (namespaces, cgroups, BPF)" >&2
	exit 1
fi

D=/tmp/fedguard-demo
# FG_BUILD: the meson build directory to use (default build/; the tests give theirs)
BUILD=${FG_BUILD:-$top/build}
AGENT=$BUILD/agent/fedguardd
CTL=$BUILD/tools/fedguardctl
CA=$BUILD/tools/fedguard-ca
NODES=(shop1 shop2 bank1 bank2)
declare -A TD=([shop1]=shop.example [shop2]=shop.example [bank1]=bank.example [bank2]=bank.example)
declare -A IDX=([shop1]=1 [shop2]=2 [bank1]=3 [bank2]=4)
declare -A WID=(
	[shop1]=spiffe://shop.example/ns/web/frontend
	[shop2]=spiffe://shop.example/ns/api/orders
	[bank1]=spiffe://bank.example/ns/pay/payments
	[bank2]=spiffe://bank.example/ns/ledger/db
)
# Ports: etcd 2379 (2380 for itself), bundle endpoints 8443, peer
# authentication 7443, agent links 7444, tunnel 7445 and its redirect
# listener 7446 (the agent takes the tunnel port + 1), workloads 8080.
PORT=8080
TUN=7445

cg2() { findmnt -n -t cgroup2 -o TARGET | head -n 1; }
addr() { echo "10.250.0.${IDX[$1]}"; }
waddr() { echo "10.250.${IDX[$1]}.2"; }
ctl() { local n=$1; shift; "$CTL" --instance "demo-$n" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Results that differ from the story the demo tells: counted, shown in
# capitals, and the demo's exit status is 1 when there is any.
unexpected=0
surprise() { unexpected=$((unexpected + 1)); }

# --- tear-down ------------------------------------------------------------------------------

down() {
	local cg
	cg=$(cg2)/fgdemo
	[ -f "$D/pids" ] && xargs -r kill 2>/dev/null <"$D/pids" || true
	[ -f "$D/capture.pid" ] && kill "$(cat "$D/capture.pid")" 2>/dev/null || true
	for n in "${NODES[@]}"; do
		[ -f "$D/$n/agent.pid" ] && kill "$(cat "$D/$n/agent.pid")" 2>/dev/null || true
	done
	sleep 0.3
	for n in "${NODES[@]}"; do
		[ -d "/sys/fs/bpf/fedguard/demo-$n" ] && "$AGENT" --instance "demo-$n" --uninstall -q || true
	done
	for n in "${NODES[@]}"; do
		ip netns del "fgdemo-$n" 2>/dev/null || true
		ip netns del "fgdemo-w-$n" 2>/dev/null || true
	done
	ip netns del fgdemo-x 2>/dev/null || true
	if [ -d "$cg" ]; then
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		sleep 0.2
		find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
	fi
	rm -rf "$D"
}

if [ "${down_only:-0}" = 1 ]; then
	down
	echo "demo.sh: removed"
	exit 0
fi

# --- set-up -----------------------------------------------------------------------------------

scripts/setup.sh
if ! command -v socat >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat >/dev/null
fi
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null

down	# a demo left by --keep, or by an interrupted run
mkdir -p "$D"
[ "$keep" = 1 ] || trap down EXIT

net() {
	ip netns add fgdemo-x
	ip -n fgdemo-x link add br0 type bridge
	ip -n fgdemo-x link set br0 up
	for n in "${NODES[@]}"; do
		local i=${IDX[$n]}
		ip netns add "fgdemo-$n"
		ip netns add "fgdemo-w-$n"
		ip link add n0 netns "fgdemo-$n" type veth peer name "v$i" netns fgdemo-x
		ip -n fgdemo-x link set "v$i" master br0 up
		ip -n "fgdemo-$n" addr add "$(addr "$n")/24" dev n0
		ip -n "fgdemo-$n" link set n0 up
		ip -n "fgdemo-$n" link set lo up
		ip link add w0 netns "fgdemo-$n" type veth peer name w0 netns "fgdemo-w-$n"
		ip -n "fgdemo-$n" addr add "10.250.$i.1/24" dev w0
		ip -n "fgdemo-$n" link set w0 up
		ip -n "fgdemo-w-$n" addr add "$(waddr "$n")/24" dev w0
		ip -n "fgdemo-w-$n" link set w0 up
		ip -n "fgdemo-w-$n" link set lo up
		ip -n "fgdemo-w-$n" route add default via "10.250.$i.1"
		nsenter --net="/var/run/netns/fgdemo-$n" sysctl -qw net.ipv4.ip_forward=1
	done
	for n in "${NODES[@]}"; do
		for m in "${NODES[@]}"; do
			[ "$n" = "$m" ] || ip -n "fgdemo-$n" route add "10.250.${IDX[$m]}.0/24" via "$(addr "$m")"
		done
	done
}

pki() {
	for td in shop.example bank.example; do
		mkdir -p "$D/$td"
		"$CA" init --trust-domain "$td" --out "$D/$td/ca" >/dev/null
		"$CA" bundle --ca "$D/$td/ca" >"$D/$td/bundle.json"
		"$CA" policy-key --out "$D/$td/pk" >/dev/null
	done
	for n in "${NODES[@]}"; do
		mkdir -p "$D/$n"
		"$CA" issue-node --ca "$D/${TD[$n]}/ca" --node "$n" --out "$D/$n/pki" >/dev/null
	done
}

etcd_start() {	# the mesh's store, in its first node's namespace
	local n=$1 td=${TD[$1]} a
	a=$(addr "$n")
	nsenter --net="/var/run/netns/fgdemo-$n" etcd --name "$td" --data-dir "$D/$td/etcd" \
		--listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
		--listen-peer-urls "http://127.0.0.1:2380" \
		--initial-advertise-peer-urls "http://127.0.0.1:2380" \
		--initial-cluster "$td=http://127.0.0.1:2380" --log-level warn \
		>"$D/$td/etcd.log" 2>&1 &
	echo $! >>"$D/pids"
	for _ in $(seq 100); do
		nsenter --net="/var/run/netns/fgdemo-$n" bash -c "exec 3<>/dev/tcp/$a/2379" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo.sh: etcd of $td did not start (log: $D/$td/etcd.log)" >&2
	exit 1
}

agent_start() {
	local n=$1 td=${TD[$1]} a other first otherfirst
	a=$(addr "$n")
	case $td in
	shop.example) other=bank.example; first=shop1; otherfirst=bank1 ;;
	*) other=shop.example; first=bank1; otherfirst=shop1 ;;
	esac
	local args=(--instance "demo-$n" --cgroup "$(cg2)/fgdemo/$n" --state-dir "$D/$n/state"
		--trust-domain "$td" --node-name "$n" --node-address "$a"
		--node-cert "$D/$n/pki/node-ca.pem" --node-key "$D/$n/pki/node-ca.key"
		--bundle "$td=$D/$td/bundle.json" --auth-listen "$a:7443"
		--policy-key "$D/$td/pk/policy.pub" --store "etcd=http://$(addr "$first"):2379"
		--peer-listen "$a:7444" --tunnel-listen "$a:$TUN"
		--federate-with "$other=https://$(addr "$otherfirst"):8443/,spiffe://$other/fedguard/node/$otherfirst,$D/$other/bundle.json")
	[ "$n" = "$first" ] && args+=(--bundle-endpoint-listen "$a:8443")
	mkdir -p "$(cg2)/fgdemo/$n"
	nsenter --net="/var/run/netns/fgdemo-$n" "$AGENT" "${args[@]}" >"$D/$n/agent.log" 2>&1 &
	echo $! >"$D/$n/agent.pid"
	for _ in $(seq 600); do
		grep -q "ready" "$D/$n/agent.log" && return 0
		kill -0 "$(cat "$D/$n/agent.pid")" 2>/dev/null || break
		sleep 0.1
	done
	echo "demo.sh: the agent of $n did not start:" >&2
	tail -n 5 "$D/$n/agent.log" >&2
	exit 1
}

workload() {	# an echo server in the workload's namespace and cgroup, registered
	local n=$1 cg
	cg=$(cg2)/fgdemo/$n/app
	mkdir -p "$cg"
	nsenter --net="/var/run/netns/fgdemo-w-$n" bash -c \
		"echo \$\$ > $cg/cgroup.procs; exec socat TCP-LISTEN:$PORT,fork,reuseaddr EXEC:/bin/cat" \
		2>>"$D/$n/echo.log" &
	echo $! >>"$D/pids"
	ctl "$n" workload add --spiffe-id "${WID[$n]}" --cgroup "$cg" --ip "$(waddr "$n")" \
		--netns "/var/run/netns/fgdemo-w-$n" --label "node=$n" >/dev/null
}

# From workload of node $1 to workload of node $2, sending line $3 (default
# "hello") and reading its echo: "ok", or why not.
call() {
	local cg msg=${3:-hello}
	cg=$(cg2)/fgdemo/$1/app
	nsenter --net="/var/run/netns/fgdemo-w-$1" timeout 5 bash -c \
		"echo \$\$ > $cg/cgroup.procs
		 exec 3<>/dev/tcp/$(waddr "$2")/$PORT || exit 1
		 echo $msg >&3; read -t 3 -u 3 line && [ \"\$line\" = $msg ] && echo ok" 2>&1 |
		sed -e 's/.*: //' | tail -n 1 || true
}

# A connection from $1's workload to $2's that echoes every 100 ms until it is cut.
live() {
	local cg out=$D/live-$1-$2
	cg=$(cg2)/fgdemo/$1/app
	nsenter --net="/var/run/netns/fgdemo-w-$1" bash -c \
		"echo \$\$ > $cg/cgroup.procs
		 exec 3<>/dev/tcp/$(waddr "$2")/$PORT || exit 1
		 while sleep 0.1; do
			echo ping >&3 2>/dev/null || { echo \"cut: \$(date +%s%N)\"; exit 0; }
			read -t 2 -u 3 line || { echo \"cut: \$(date +%s%N)\"; exit 0; }
			echo alive > $out.alive
		 done" >"$out" 2>&1 &
	echo $! >>"$D/pids"
}

# tcpdump on the bridge between the nodes, every packet whole, written as it
# comes (--immediate-mode: none waits in a kernel buffer when it stops; -U:
# none in its own); -Z root: it writes into $D, which is root's alone.
capture_start() {
	nsenter --net=/var/run/netns/fgdemo-x tcpdump -i br0 --immediate-mode -s 0 -U -Z root \
		-w "$D/wire.pcap" >"$D/capture.log" 2>&1 &
	echo $! >"$D/capture.pid"
	for _ in $(seq 100); do	# it says so on stderr once it listens
		grep -q "listening on" "$D/capture.log" && return 0
		sleep 0.1
	done
	echo "demo.sh: tcpdump did not start:" >&2
	cat "$D/capture.log" >&2
	exit 1
}

capture_stop() {
	local pid
	pid=$(cat "$D/capture.pid")
	sleep 0.3	# what is in flight reaches the file
	kill "$pid"
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$D/capture.pid"
}

captured() { grep -qaF "$1" "$D/wire.pcap"; }
packets() { tcpdump -nr "$D/wire.pcap" "$@" 2>/dev/null | wc -l; }
tunnel_line() { ctl "$1" status | sed -n 's/^tunnel: //p'; }

wait_for() {	# up to 15 s for a command to succeed
	for _ in $(seq 300); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

knows() { ctl "$1" -j endpoint list | grep -q "\"$2\""; }
quarantined() { ctl "$1" -j quarantine list | grep -q "\"$2\""; }
converged() { ctl "$1" policy status | grep -q "every agent enforces"; }

# The same rules, signed by each mesh for itself. No transport said: the
# flows between nodes are encrypted, the tunnel authenticates both workloads.
policy() {
	cat <<EOF
version: 1
rules:
  - name: frontend-to-orders
    action: allow
    from: {spiffe_id: ${WID[shop1]}}
    to: {spiffe_id: ${WID[shop2]}}
    ports: [$PORT]
    protocols: [tcp]
  - name: frontend-to-payments
    action: allow
    from: {spiffe_id: ${WID[shop1]}}
    to: {spiffe_id: ${WID[bank1]}}
    ports: [$PORT]
    protocols: [tcp]
  # trusted with authentication alone: the direct path, in clear, to compare
  - name: payments-to-ledger
    action: allow
    from: {spiffe_id: ${WID[bank1]}}
    to: {spiffe_id: ${WID[bank2]}}
    ports: [$PORT]
    protocols: [tcp]
    auth: required
    transport: authenticated
EOF
}

# --- the story ---------------------------------------------------------------------------------

say "1. Two meshes on this machine: shop.example (shop1, shop2) and bank.example (bank1, bank2)"
net
pki
etcd_start shop1
etcd_start bank1
for n in "${NODES[@]}"; do agent_start "$n"; done
for n in "${NODES[@]}"; do workload "$n"; done
note "each mesh: its own CA (fedguard-ca), policy key and etcd; a fedguardd per node"
note "shop1 and bank1 serve their trust domain's SPIFFE bundle endpoint on port 8443;"
note "every agent links to the other mesh's first agent with mTLS (node SVIDs)"
note "every agent runs the tunnel on port $TUN of its node: the encrypted transport"
for n in "${NODES[@]}"; do note "$(printf '%-6s %-40s at %s' "$n" "${WID[$n]}" "$(waddr "$n")")"; done

say "2. Each mesh signs its policy and applies it at one agent; the store takes it to the others"
for td in shop.example bank.example; do
	policy >"$D/$td/policy.yaml"
	"$CTL" policy sign "$D/$td/policy.yaml" --key "$D/$td/pk/policy.key" >/dev/null
done
ctl shop1 policy apply "$D/shop.example/policy.yaml" | sed 's/^/   /'
ctl bank1 policy apply "$D/bank.example/policy.yaml" | sed 's/^/   /'
wait_for converged shop2 && wait_for converged bank2
ctl shop2 policy status | sed 's/^/   /'
wait_for knows shop1 "${WID[bank1]}" && wait_for knows bank2 "${WID[shop1]}" &&
	wait_for knows bank1 "${WID[shop1]}"
note "bank.example tells shop.example only what its policy lets shop.example call or be called by:"
ctl shop1 endpoint list | sed 's/^/   /'
note "in force at bank1: payments -> ledger takes the direct path, its rule says so;"
note "the other rules say nothing: their flows between nodes are encrypted"
ctl bank1 policy show | sed 's/^/   /'

say "3. Calls"
report() {	# $1 from, $2 to, $3 expected (allowed|denied), $4 why
	local got
	got=$(call "$1" "$2")
	if [ "$got" = ok ]; then got=allowed; else got="denied ($got)"; fi
	if [ "${got%% *}" != "$3" ]; then
		surprise
		got="$got, EXPECTED $3"
	fi
	printf '   %-42s -> %-38s %s   [%s]\n' "${WID[$1]}" "${WID[$2]}" "$got" "$4"
}
report shop1 shop2 allowed "inside shop.example: encrypted, TLS 1.3 between the workloads' SVIDs"
report shop1 bank1 allowed \
	"across the meshes, both policies allow it: encrypted, each SVID checked with its own bundle"
report bank1 bank2 allowed "inside bank.example: authenticated, the direct path after mTLS"
report shop1 bank2 denied "bank.example never told shop.example about its ledger"
report shop2 bank1 denied "no rule: default deny, EPERM at once"
report bank2 shop1 denied "no rule"
note "bank1's peers: its mesh's agents, and shop.example's agents linked to it:"
ctl bank1 peer list | sed 's/^/   /'
note "bank2 fetched shop.example's bundle from shop1's bundle endpoint:"
ctl bank2 bundle list | sed 's/^/   /'

say "4. On the wire: a capture between the nodes while each allowed call sends a secret"
tag=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
declare -A SECRET=([shop1-shop2]="order-$tag" [shop1-bank1]="card-$tag" [bank1-bank2]="ledger-$tag")
capture_start
for f in shop1-shop2 shop1-bank1 bank1-bank2; do
	got=$(call "${f%-*}" "${f#*-}" "${SECRET[$f]}")
	note "$(printf '%-14s %-16s echoed: %s' "${f/-/ -> }" "${SECRET[$f]}" "$got")"
done
capture_stop
note "$(printf 'captured %d packets: %d on the tunnel port %d, %d on the workloads port %d' \
	"$(packets)" "$(packets tcp port "$TUN")" "$TUN" "$(packets tcp port "$PORT")" "$PORT")"
for f in shop1-shop2 shop1-bank1 bank1-bank2; do
	how=encrypted
	[ "$f" = bank1-bank2 ] && how=authenticated
	case $how-$(captured "${SECRET[$f]}" && echo seen || echo unseen) in
	encrypted-unseen) what="not in the capture" ;;
	encrypted-seen) what="IN THE CAPTURE, in clear"; surprise ;;
	authenticated-seen) what="in the capture, in clear" ;;
	authenticated-unseen) what="NOT in the capture: did the capture miss it?"; surprise ;;
	esac
	note "$(printf '%-16s %-14s %-14s %s' "${SECRET[$f]}" "${f/-/ -> }" "$how" "$what")"
done
note "the agents' tunnels (flows out from the caller's node, in at the destination's):"
for n in "${NODES[@]}"; do note "$(printf '%-6s %s' "$n" "$(tunnel_line "$n")")"; done

say "5. An incident: shop.example quarantines its frontend (issued at shop2)"
live shop1 shop2
live shop1 bank1
sleep 1
note "live connections: frontend -> orders (shop1 -> shop2), frontend -> payments (shop1 -> bank1),"
note "both in tunnels: the agents reset both ends"
t0=$(now_ms)
ctl shop2 quarantine add "${WID[shop1]}" --reason "demo: compromised frontend" | sed 's/^/   /'
for n in shop1 bank1 bank2; do
	wait_for quarantined "$n" "${WID[shop1]}" &&
		note "$(printf 'in force at %-6s %4d ms after the command started' "$n" $(($(now_ms) - t0)))"
done
sleep 2.5
for f in shop1-shop2 shop1-bank1; do
	if grep -q cut "$D/live-$f"; then
		note "connection ${f/-/ -> }: cut ($(( ($(sed -n 's/cut: //p' "$D/live-$f") / 1000000) - t0 )) ms after the command started)"
	else
		note "connection ${f/-/ -> }: NOT cut"
		surprise
	fi
done
for n in shop1 shop2 bank1; do note "$(printf '%-6s %s' "$n" "$(tunnel_line "$n")")"; done
report shop1 bank1 denied "quarantined in every mesh"
ctl bank2 quarantine list | sed 's/^/   /'
note "bank.example cannot release it: only shop.example speaks for its identities"
ctl bank2 quarantine del "${WID[shop1]}" 2>&1 | sed 's/^/   /' || true

say "6. Release (at shop1)"
ctl shop1 quarantine del "${WID[shop1]}" | sed 's/^/   /'
wait_for bash -c "! $CTL --instance demo-bank1 -j quarantine list | grep -q '${WID[shop1]}'"
report shop1 bank1 allowed "released everywhere, encrypted again"

if [ "$keep" = 1 ]; then
	say "The demo keeps running. Explore, e.g.:"
	note "$CTL --instance demo-bank1 status"
	note "$CTL --instance demo-shop1 peer list"
	note "$CTL --instance demo-shop1 observe --last 20"
	note "bpftool map dump pinned /sys/fs/bpf/fedguard/demo-shop1/fg_quarantine"
	note "bpftool map dump pinned /sys/fs/bpf/fedguard/demo-shop1/fg_tun_orig"
	note "the capture of step 4: tcpdump -nr $D/wire.pcap"
	note "agents' logs: $D/<node>/agent.log"
	note "remove it all: sudo bash scripts/demo.sh --down"
else
	say "Done: removing everything the demo made"
fi
if [ "$unexpected" -gt 0 ]; then
	echo "demo.sh: $unexpected result(s) differ from the story told above" >&2
	exit 1
fi

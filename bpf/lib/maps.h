/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every map of the datapath. All are pinned by fedguardd under
 * /sys/fs/bpf/fedguard/<instance>/<name> and carry BTF, so that
 * `bpftool map dump pinned ...` prints field names.
 */
#ifndef FG_BPF_MAPS_H
#define FG_BPF_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <fedguard/abi.h>

/* Sizing; see docs/ARCHITECTURE.md for the memory each costs. */
enum fg_map_sizes {
	FG_MAX_CGROUPS = 16384,
	FG_MAX_IPCACHE = 65536,
	FG_MAX_POLICY = 131072,
	FG_MAX_QUARANTINE = 4096,
	FG_MAX_AUTH = 65536,
	FG_MAX_SOCKETS = 262144,
	FG_MAX_FLOWS = 65536,
	FG_MAX_TUNNELS = 65536,
	FG_EVENTS_BYTES = 256 * 1024,
};

/*
 * cgroup id -> identity of the workload whose processes live there (or
 * below). Written by the agent when a workload is registered; read by the
 * cgroup hooks. A cgroup of the managed subtree without an entry (and
 * without a registered ancestor) is denied everything.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct fg_cgroup_info);
} fg_cgroups SEC(".maps");

/*
 * {family, address/prefix} -> identity, trust domain and owning node.
 * Written by the agent (local workloads, endpoints learnt from peers);
 * read by every hook to name the peer and to catch spoofed sources.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FG_MAX_IPCACHE);
	__uint(map_flags, BPF_F_NO_PREALLOC);	/* required for LPM tries */
	__type(key, struct fg_ipcache_key);
	__type(value, struct fg_ipcache_value);
} fg_ipcache SEC(".maps");

/*
 * Policy: slot 0 holds the active rule map (struct fg_policy_inner). The
 * agent fills a new inner map and swaps it in with one update, so every
 * decision sees either the old or the new rule set, never a mix. An empty
 * slot means no policy: everything is denied. The agent creates the inner
 * maps itself with the same flags (BPF_F_NO_PREALLOC) and key/value sizes;
 * max_entries may differ, which hash inner maps allow.
 */
struct fg_policy_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_POLICY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fg_policy_key);
	__type(value, struct fg_policy_value);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct fg_policy_inner);
} fg_policy_slot SEC(".maps");

/*
 * {identity or trust domain} -> since, reason. Written by the agent on
 * `quarantine add`; read on every decision and every packet.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_QUARANTINE);
	__type(key, struct fg_quarantine_key);
	__type(value, struct fg_quarantine_value);
} fg_quarantine SEC(".maps");

/*
 * {local identity, peer identity, peer node} -> expiry of the mTLS
 * handshake that proved both. Written by the agent after a handshake;
 * read where policy demands FG_AUTH_MTLS.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_AUTH);
	__type(key, struct fg_auth_key);
	__type(value, struct fg_auth_value);
} fg_auth SEC(".maps");

/*
 * socket cookie -> the identities a TCP socket is bound to. Written by the
 * connect hooks (active opens) and sockops (accepted sockets), deleted by
 * sock_release; the agent reads it to find the sockets of an identity.
 * A plain hash, not LRU: security state is never evicted; when full, new
 * connections are denied (FG_REASON_DENY_MAP_FULL).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct fg_sock_binding);
} fg_sockets SEC(".maps");

/* Per-CPU packet and byte counts by enum fg_reason; read by agent and bpftool. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FG_COUNTERS_MAX);
	__type(key, __u32);
	__type(value, struct fg_counter);
} fg_counters SEC(".maps");

/* Drop, auth-needed and (optionally) allow events for the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FG_EVENTS_BYTES);
} fg_events SEC(".maps");

/*
 * What became of the events the programs wanted to report, per CPU:
 * emitted, suppressed by the rate limit, lost to a full ring buffer; and
 * each CPU's token bucket (struct fg_ev_stats, key 0). Written by
 * fg_emit(); read by the agent (metrics) and bpftool.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fg_ev_stats);
} fg_ev_stats SEC(".maps");

/*
 * TC flow table: 5-tuple as first seen -> the identities and policy
 * generation it was allowed under. Written and read by the TC programs
 * only. LRU is safe here: an evicted flow is judged again from policy,
 * with the reply rule, so eviction can cost a lookup but never admit
 * anything policy does not.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FG_MAX_FLOWS);
	__type(key, struct fg_flow_key);
	__type(value, struct fg_flow_value);
} fg_flows SEC(".maps");

/*
 * The encrypted transport, source side (include/fedguard/abi.h). Socket
 * cookie -> the original destination of a connection the connect hook sent
 * to the agent's redirect listener, and its source once sockops saw the
 * connect. Written by the connect hooks and sockops, deleted by
 * sock_release; read by getpeername (which shows the original destination)
 * and the agent. Sized like the tunnel's flows: a connect that finds it
 * full is denied (FG_REASON_DENY_MAP_FULL).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_TUNNELS);
	__type(key, __u64);
	__type(value, struct fg_tun_orig);
} fg_tun_orig SEC(".maps");

/*
 * {family, source address, source port} of a redirected connection -> its
 * socket cookie. Written by sockops when the connection starts, deleted by
 * sock_release; read by the agent, which knows the connection it accepted
 * only by its source. A connection without an entry is refused by the agent.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_TUNNELS);
	__type(key, struct fg_tun_key);
	__type(value, __u64);
} fg_tun_src SEC(".maps");

/*
 * The encrypted transport, destination side: {family, address, port} the
 * agent connects to a local workload from -> the source workload the tunnel
 * authenticated. Written by the agent before it connects, deleted when the
 * connection ends; read by cgroup_skb and sockops, which bind the
 * workload's socket to that identity instead of the agent's address.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FG_MAX_TUNNELS);
	__type(key, struct fg_tun_key);
	__type(value, struct fg_tun_peer);
} fg_tun_peer SEC(".maps");

#endif /* FG_BPF_MAPS_H */

// SPDX-License-Identifier: Apache-2.0
/*
 * Verdict tables: packet and map contents in, verdict and counter out, for
 * the real cgroup_skb and TC programs in the real kernel, through
 * BPF_PROG_TEST_RUN. The skeleton is loaded, never attached or pinned.
 *
 * Every row: a crafted Ethernet frame, the maps (on top of a fixed world of
 * identities), the program's return value, and the one enum fg_reason whose
 * fg_counters entry must grow by exactly one packet (and the packet's bytes)
 * while no other reason moves. A drop must also leave exactly one FG_EV_DROP
 * event with that reason on fg_events; a pass, none.
 *
 * cgroup_skb under test_run: the kernel runs the program on a dummy socket
 * charged to the cgroup of the calling task, so bpf_skb_cgroup_id() is this
 * process's cgroup v2 id (checked on 6.18: a child cgroup's id came back,
 * and mapping only an ancestor was found by the ancestor walk). The world
 * maps that id to identity A. The dummy socket's cookie is new on every run,
 * so no fg_sockets binding can match it: these rows cover the unbound path
 * (fg_skb_unbound) only; the bound path (fg_skb_bound) needs real sockets
 * and belongs to the kernel tests (test_datapath.c).
 *
 * test_run on 6.18 refuses (EINVAL) a frame shorter than the Ethernet header
 * plus the minimal IPv4 (20 bytes) or IPv6 (40 bytes) header its Ethernet
 * type announces, so "IPv4 header cut short" is a header whose ihl promises
 * options the frame does not hold.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <fedguard/abi.h>
/* after abi.h: the skeleton's rodata struct names the ABI's types */
#include "fedguard.skel.h"

#include "lib/cgroup.h"
#include "lib/mapfill.h"
#include "lib/packet.h"
#include "lib/require.h"

/* --- the world every row starts from ------------------------------------ */

enum {
	ID_A = 1000,	/* local workload: this process's cgroup, addresses A4, A6 */
	ID_B = 2000,	/* peer on node B */
	ID_C = 3000,	/* another remote identity, on node C */
	TD_A = 10,
	TD_B = 20,
	TD_C = 30,
	GEN = 7,	/* generation of every row's policy */
	GEN_NEXT = 8,	/* a later policy */
	AUTH_LIFETIME_S = 60,
	TUN_PORT = 18447,
};

#define A4 "10.0.0.1"
#define B4 "10.0.1.2"
#define C4 "10.0.2.3"
#define X4 "10.9.9.9"	/* in no map */
#define Y4 "10.9.9.10"	/* in no map */
#define A6 "fd00::1"
#define B6 "fd00:1::2"
#define C6 "fd00:2::3"
#define X6 "fd00:9::9"
#define TUN4 "192.0.2.1"	/* the node's address: the agent's redirect listener */

static const struct endpoint {
	const char *addr;
	__u32 id;
	__u32 td;
	__u32 flags;
	const char *node;	/* owning node, IPv4-mapped for IPv4 nodes */
} endpoints[] = {
	{ A4, ID_A, TD_A, FG_IPC_LOCAL, "::ffff:192.0.2.1" },
	{ A6, ID_A, TD_A, FG_IPC_LOCAL, "::ffff:192.0.2.1" },
	{ B4, ID_B, TD_B, 0, "::ffff:192.0.2.2" },
	{ B6, ID_B, TD_B, 0, "::ffff:192.0.2.2" },
	{ C4, ID_C, TD_C, 0, "2001:db8::3" },
	{ C6, ID_C, TD_C, 0, "2001:db8::3" },
};

/* --- the row format ------------------------------------------------------ */

enum prog {
	PROG_NONE,
	SKB_EGRESS,
	SKB_INGRESS,
	TC_EGRESS,
	TC_INGRESS,
};

enum {
	PASS = SK_PASS,		/* cgroup_skb verdicts */
	DROP = SK_DROP,
	OK = TC_ACT_UNSPEC,	/* TC verdicts: pass on to the next filter */
	SHOT = TC_ACT_SHOT,
	NOT_COUNTED = FG_REASON_MAX,	/* expected reason: no counter moves */
};

enum auth_state {
	AUTH_VALID = 1,		/* expiry a minute ahead */
	AUTH_EXPIRED,		/* expiry a second ago */
};

struct auth_entry {
	__u32 local;
	__u32 peer;		/* the node comes from the peer's endpoint */
	__u32 state;		/* enum auth_state */
};

enum {
	MAX_RULES = 4,
	MAX_QUARANTINE = 2,
	MAX_AUTH = 2,
};

/* Map contents of a row, on top of the endpoints. Lists end at a zero entry. */
struct world {
	struct fg_test_rule rules[MAX_RULES];
	struct fg_quarantine_key quarantine[MAX_QUARANTINE];
	struct auth_entry auth[MAX_AUTH];
	__u32 gen;		/* policy generation; GEN when 0 in a row's world */
	__u8 shape;		/* the generation entry's enum fg_policy_shape bits */
	bool no_policy;		/* leave fg_policy_slot empty */
	bool no_cgroup;		/* no fg_cgroups entry for this process's cgroup */
	/* an fg_tun_peer entry: the agent's end of a tunnelled connection at
	 * tun_addr:tun_port carries identity tun_id */
	const char *tun_addr;
	__u16 tun_port;
	__u32 tun_id;
};

/* A packet sent before the row's own, to build state (the TC flow table). */
struct step {
	enum prog prog;
	struct fg_test_pkt_spec pkt;
	int verdict;
};

struct row {
	const char *name;
	enum prog prog;
	struct fg_test_pkt_spec pkt;
	struct world w;
	int verdict;
	__u32 reason;		/* enum fg_reason, or NOT_COUNTED */
	struct step before;	/* optional */
	/* optional, applied after @before: a new policy when its gen is set,
	 * and more quarantine and auth entries (auth overwrites) */
	const struct world *then;
};

#define SYN FG_TEST_SYN
#define ACK FG_TEST_ACK
#define SYNACK (FG_TEST_SYN | FG_TEST_ACK)

#define TCP4(s, d, sp, dp, fl, ...)                                                               \
	{ .family = 4, .proto = IPPROTO_TCP, .src = s, .dst = d, .sport = sp, .dport = dp,        \
	  .tcp_flags = fl, __VA_ARGS__ }
#define TCP6(s, d, sp, dp, fl, ...)                                                               \
	{ .family = 6, .proto = IPPROTO_TCP, .src = s, .dst = d, .sport = sp, .dport = dp,        \
	  .tcp_flags = fl, __VA_ARGS__ }
#define UDP4(s, d, sp, dp, ...)                                                                   \
	{ .family = 4, .proto = IPPROTO_UDP, .src = s, .dst = d, .sport = sp, .dport = dp,        \
	  __VA_ARGS__ }
#define UDP6(s, d, sp, dp, ...)                                                                   \
	{ .family = 6, .proto = IPPROTO_UDP, .src = s, .dst = d, .sport = sp, .dport = dp,        \
	  __VA_ARGS__ }
#define ARP(s, d) { .family = 0, .src = s, .dst = d }

/* fg_policy entries, spelled as their keys: src, dst, port, proto, dir */
#define RULE(s, d, p, pr, dir, act, auth)                                                         \
	{ { s, d, p, IPPROTO_##pr, FG_DIR_##dir }, { FG_ACT_##act, FG_AUTH_##auth, 0, 0, __LINE__ } }
#define ALLOW(s, d, p, pr, dir) RULE(s, d, p, pr, dir, ALLOW, NONE)
#define ALLOW_MTLS(s, d, p, pr, dir) RULE(s, d, p, pr, dir, ALLOW, MTLS)
#define DENY(s, d, p, pr, dir) RULE(s, d, p, pr, dir, DENY, NONE)
/* allow entries that policy wants encrypted: only through the tunnel */
#define ALLOW_TUN(s, d, p, pr, dir)                                                               \
	{ { s, d, p, IPPROTO_##pr, FG_DIR_##dir },                                               \
	  { FG_ACT_ALLOW, FG_AUTH_NONE, FG_TRANSPORT_TUNNEL, 0, __LINE__ } }
#define ALLOW_TUN_MTLS(s, d, p, pr, dir)                                                          \
	{ { s, d, p, IPPROTO_##pr, FG_DIR_##dir },                                               \
	  { FG_ACT_ALLOW, FG_AUTH_MTLS, FG_TRANSPORT_TUNNEL, 0, __LINE__ } }
#define TUN_PEER(addr, port, id) .tun_addr = addr, .tun_port = port, .tun_id = id
#define ANY FG_ID_ANY

#define Q_ID(id) { FG_Q_IDENTITY, id }
#define Q_TD(td) { FG_Q_TRUST_DOMAIN, td }
#define AUTH_OK(l, p) { l, p, AUTH_VALID }
#define AUTH_OLD(l, p) { l, p, AUTH_EXPIRED }

/* --- cgroup_skb, egress: packets a workload of this cgroup sends ---------- */

static const struct row skb_egress_rows[] = {
	{ "tcp4 allowed by exact entry", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 no entry for the port: default deny", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 443, TCP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 deny entry (wildcard peer) overrides exact allow", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS), DENY(ID_A, ANY, 80, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_RULE },
	{ "tcp4 exact deny overrides wildcard allow", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS), DENY(ID_A, ID_B, 80, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_RULE },
	{ "tcp4 wildcard port", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 0, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 wildcard peer", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 wildcard never stands for the local side", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ANY, ID_B, 80, TCP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	/* a map's shape says which wildcards it lacks; their probes are skipped
	 * (the agent never writes a shape its entries contradict: these rows
	 * show that the skip happens, and that exact entries still decide) */
	{ "tcp4 shape without wildcards: an exact allow decides", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) },
	    .shape = FG_SHAPE_NO_ANY_PEER | FG_SHAPE_NO_ANY_PORT }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 shape without wildcards: an exact deny decides", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { DENY(ID_A, ID_B, 80, TCP, EGRESS) },
	    .shape = FG_SHAPE_NO_ANY_PEER | FG_SHAPE_NO_ANY_PORT }, DROP, FG_REASON_DENY_RULE },
	{ "tcp4 shape without wildcard peers: the any-peer probe is skipped", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 80, TCP, EGRESS) }, .shape = FG_SHAPE_NO_ANY_PEER },
	  DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 shape without wildcard ports: the any-port probe is skipped", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 0, TCP, EGRESS) }, .shape = FG_SHAPE_NO_ANY_PORT },
	  DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 shape without wildcard ports: the any-peer probe stays", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { DENY(ID_A, ANY, 80, TCP, EGRESS), ALLOW(ID_A, ID_B, 80, TCP, EGRESS) },
	    .shape = FG_SHAPE_NO_ANY_PORT }, DROP, FG_REASON_DENY_RULE },
	{ "tcp4 an ingress entry does not allow egress", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, INGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 a udp entry does not allow tcp", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, UDP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 quarantined source", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_A) } },
	  DROP, FG_REASON_DENY_QUARANTINE_LOCAL },
	{ "tcp4 quarantined destination", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_PEER },
	{ "tcp4 quarantined trust domain of the destination", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_TD(TD_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_TD },
	{ "tcp4 quarantined trust domain of the source", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_TD(TD_A) } },
	  DROP, FG_REASON_DENY_QUARANTINE_TD },
	{ "tcp4 quarantine of an unrelated identity and trust domain", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) },
	    .quarantine = { Q_ID(ID_C), Q_TD(TD_C) } },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 unknown destination", SKB_EGRESS, TCP4(A4, X4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } }, DROP, FG_REASON_DENY_UNKNOWN_PEER },
	{ "tcp4 mtls required, no auth entry", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) } }, DROP,
	  FG_REASON_DENY_AUTH_MISSING },
	{ "tcp4 mtls required, auth expired", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OLD(ID_A, ID_B) } },
	  DROP, FG_REASON_DENY_AUTH_EXPIRED },
	{ "tcp4 mtls required, auth valid", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OK(ID_A, ID_B) } },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 mtls required, auth only with another peer", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) }, .auth = { AUTH_OK(ID_A, ID_C) } },
	  DROP, FG_REASON_DENY_AUTH_MISSING },
	{ "tcp4 strictest auth of all matching allows applies", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS),
		       ALLOW_MTLS(ID_A, ANY, 0, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_AUTH_MISSING },
	{ "tcp4 spoofed source: another identity's address", SKB_EGRESS,
	  TCP4(C4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS), ALLOW(ID_C, ID_B, 80, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_SPOOF },
	{ "tcp4 spoofed source: unknown address", SKB_EGRESS, TCP4(X4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, DROP, FG_REASON_DENY_SPOOF },
	{ "tcp4 no policy installed", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .no_policy = true }, DROP, FG_REASON_DENY_NO_POLICY },
	{ "tcp4 cgroup without identity", SKB_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .no_cgroup = true }, DROP,
	  FG_REASON_DENY_NO_IDENTITY },
	{ "tcp4 reply of an allowed ingress connection (stateless)", SKB_EGRESS,
	  TCP4(A4, B4, 8080, 50000, SYNACK),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, PASS, FG_REASON_ALLOW_REPLY },
	{ "tcp4 a bare SYN is never a reply", SKB_EGRESS, TCP4(A4, B4, 8080, 50000, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 reply from another port is no reply", SKB_EGRESS, TCP4(A4, B4, 8081, 50000, ACK),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 reply of an mtls connection needs auth", SKB_EGRESS, TCP4(A4, B4, 8080, 50000, ACK),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) } }, DROP,
	  FG_REASON_DENY_AUTH_MISSING },
	{ "udp4 allowed, with payload", SKB_EGRESS, UDP4(A4, B4, 5000, 53, .payload = 100),
	  { .rules = { ALLOW(ID_A, ID_B, 53, UDP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "udp4 default deny", SKB_EGRESS, UDP4(A4, B4, 5000, 53),
	  { .rules = { ALLOW(ID_A, ID_B, 53, TCP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "udp4 reply of an allowed ingress flow", SKB_EGRESS, UDP4(A4, B4, 53, 5000),
	  { .rules = { ALLOW(ID_B, ID_A, 53, UDP, INGRESS) } }, PASS, FG_REASON_ALLOW_REPLY },
	{ "udp4 quarantined destination", SKB_EGRESS, UDP4(A4, B4, 5000, 53),
	  { .rules = { ALLOW(ID_A, ID_B, 53, UDP, EGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_PEER },
	{ "tcp6 allowed by exact entry", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp6 default deny", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_C, 80, TCP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp6 exact deny overrides wildcard allow", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS), DENY(ID_A, ID_B, 80, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_RULE },
	{ "tcp6 wildcard peer and port", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp6 quarantined source", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_A) } },
	  DROP, FG_REASON_DENY_QUARANTINE_LOCAL },
	{ "tcp6 quarantined destination", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_PEER },
	{ "tcp6 quarantined trust domain", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_TD(TD_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_TD },
	{ "tcp6 unknown destination", SKB_EGRESS, TCP6(A6, X6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } }, DROP, FG_REASON_DENY_UNKNOWN_PEER },
	{ "tcp6 mtls required, no auth entry", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) } }, DROP,
	  FG_REASON_DENY_AUTH_MISSING },
	{ "tcp6 mtls required, auth expired", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OLD(ID_A, ID_B) } },
	  DROP, FG_REASON_DENY_AUTH_EXPIRED },
	{ "tcp6 mtls required, auth valid", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OK(ID_A, ID_B) } },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp6 spoofed source", SKB_EGRESS, TCP6(C6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, DROP, FG_REASON_DENY_SPOOF },
	{ "tcp6 no policy installed", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .no_policy = true }, DROP, FG_REASON_DENY_NO_POLICY },
	{ "tcp6 cgroup without identity", SKB_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .no_cgroup = true }, DROP,
	  FG_REASON_DENY_NO_IDENTITY },
	{ "tcp6 reply of an allowed ingress connection (stateless)", SKB_EGRESS,
	  TCP6(A6, B6, 8080, 50000, ACK),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, PASS, FG_REASON_ALLOW_REPLY },
	{ "tcp6 behind two destination options headers", SKB_EGRESS,
	  TCP6(A6, B6, 40000, 80, SYN, .v6_dstopts = 2),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp6 first fragment behind an options header: ports found", SKB_EGRESS,
	  TCP6(A6, B6, 40000, 80, SYN, .v6_dstopts = 1, .v6_frag = true, .more_frags = true),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "udp6 allowed", SKB_EGRESS, UDP6(A6, B6, 5000, 53),
	  { .rules = { ALLOW(ID_A, ID_B, 53, UDP, EGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "udp6 default deny", SKB_EGRESS, UDP6(A6, B6, 5000, 53),
	  { .rules = { ALLOW(ID_A, ID_B, 54, UDP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "arp is not ours to judge", SKB_EGRESS, ARP(A4, B4), { .no_policy = true }, PASS,
	  NOT_COUNTED },
	{ "tcp4 encrypted by policy, sent directly: denied", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN), { .rules = { ALLOW_TUN(ID_A, ID_B, 80, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_NO_TUNNEL },
	{ "udp6 encrypted by policy: no datagram takes the tunnel", SKB_EGRESS,
	  UDP6(A6, B6, 5000, 53), { .rules = { ALLOW_TUN(ID_A, ANY, 53, UDP, EGRESS) } }, DROP,
	  FG_REASON_DENY_NO_TUNNEL },
	{ "tcp4 encrypted by policy to a workload of this node: direct", SKB_EGRESS,
	  TCP4(A4, A4, 40000, 80, SYN), { .rules = { ALLOW_TUN(ID_A, ANY, 80, TCP, EGRESS) } },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 reply to the agent's end of a tunnel (SYN-ACK)", SKB_EGRESS,
	  TCP4(A4, X4, 8080, 45000, SYNACK),
	  { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_B) },
	  PASS, FG_REASON_ALLOW_REPLY },
	{ "tcp4 FIN to the redirect listener after close() forgot the binding", SKB_EGRESS,
	  TCP4(A4, TUN4, 40000, TUN_PORT, ACK), { .rules = { DENY(ID_A, ANY, 0, TCP, EGRESS) } },
	  PASS, FG_REASON_ALLOW_ESTABLISHED },
	{ "tcp4 a SYN to the redirect listener must come redirected", SKB_EGRESS,
	  TCP4(A4, TUN4, 40000, TUN_PORT, SYN), { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_UNKNOWN_PEER },
	{ "tcp4 another port of the node's address is nobody", SKB_EGRESS,
	  TCP4(A4, TUN4, 40000, TUN_PORT + 1, ACK), { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } },
	  DROP, FG_REASON_DENY_UNKNOWN_PEER },
	{ "tcp4 to the agent's end of a tunnel whose caller policy does not allow", SKB_EGRESS,
	  TCP4(A4, X4, 8080, 45000, SYNACK),
	  { .rules = { ALLOW_TUN(ID_C, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_B) },
	  DROP, FG_REASON_DENY_POLICY },
};

/* --- cgroup_skb, ingress: packets delivered to this cgroup's sockets ----- */

static const struct row skb_ingress_rows[] = {
	{ "tcp4 allowed by exact entry", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 default deny", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8081, TCP, INGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 wildcard peer", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 8080, TCP, INGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 wildcard port", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 0, TCP, INGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 deny entry overrides wildcard allow", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 0, TCP, INGRESS), DENY(ID_B, ID_A, 8080, TCP, INGRESS) } },
	  DROP, FG_REASON_DENY_RULE },
	{ "tcp4 an egress entry admits no new connection", SKB_INGRESS,
	  TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 8080, TCP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 quarantined source", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_PEER },
	{ "tcp4 quarantined destination", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_ID(ID_A) } },
	  DROP, FG_REASON_DENY_QUARANTINE_LOCAL },
	{ "tcp4 quarantined trust domain of the source", SKB_INGRESS,
	  TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_TD(TD_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_TD },
	{ "tcp4 unknown source", SKB_INGRESS, TCP4(X4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 0, TCP, INGRESS) } }, DROP, FG_REASON_DENY_UNKNOWN_PEER },
	{ "tcp4 mtls required, no auth entry", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) } }, DROP,
	  FG_REASON_DENY_AUTH_MISSING },
	{ "tcp4 mtls required, auth expired", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) },
	    .auth = { AUTH_OLD(ID_A, ID_B) } },
	  DROP, FG_REASON_DENY_AUTH_EXPIRED },
	{ "tcp4 mtls required, auth valid", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) },
	    .auth = { AUTH_OK(ID_A, ID_B) } },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 reply of an allowed egress connection (stateless)", SKB_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_REPLY },
	{ "tcp4 reply of a denied egress connection", SKB_INGRESS, TCP4(B4, A4, 80, 40000, SYNACK),
	  { .rules = { ALLOW(ID_A, ID_B, 443, TCP, EGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 no policy installed", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .no_policy = true }, DROP, FG_REASON_DENY_NO_POLICY },
	{ "tcp4 cgroup without identity", SKB_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .no_cgroup = true }, DROP,
	  FG_REASON_DENY_NO_IDENTITY },
	{ "udp4 allowed", SKB_INGRESS, UDP4(B4, A4, 5000, 53),
	  { .rules = { ALLOW(ID_B, ID_A, 53, UDP, INGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "udp4 default deny", SKB_INGRESS, UDP4(B4, A4, 5000, 53),
	  { .rules = { ALLOW(ID_B, ID_A, 53, TCP, INGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "udp4 reply of an allowed egress flow", SKB_INGRESS, UDP4(B4, A4, 53, 5000),
	  { .rules = { ALLOW(ID_A, ID_B, 53, UDP, EGRESS) } }, PASS, FG_REASON_ALLOW_REPLY },
	{ "tcp6 allowed by exact entry", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp6 default deny", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_C, ID_A, 8080, TCP, INGRESS) } }, DROP, FG_REASON_DENY_POLICY },
	{ "tcp6 deny entry overrides allow", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS), DENY(ANY, ID_A, 0, TCP, INGRESS) } },
	  DROP, FG_REASON_DENY_RULE },
	{ "tcp6 quarantined source", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_PEER },
	{ "tcp6 quarantined destination", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_ID(ID_A) } },
	  DROP, FG_REASON_DENY_QUARANTINE_LOCAL },
	{ "tcp6 quarantined trust domain of the destination", SKB_INGRESS,
	  TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_TD(TD_A) } },
	  DROP, FG_REASON_DENY_QUARANTINE_TD },
	{ "tcp6 unknown source", SKB_INGRESS, TCP6(X6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 0, TCP, INGRESS) } }, DROP, FG_REASON_DENY_UNKNOWN_PEER },
	{ "tcp6 mtls required, auth expired", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) },
	    .auth = { AUTH_OLD(ID_A, ID_B) } },
	  DROP, FG_REASON_DENY_AUTH_EXPIRED },
	{ "tcp6 reply of an allowed egress connection (stateless)", SKB_INGRESS,
	  TCP6(B6, A6, 80, 40000, SYNACK),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, PASS, FG_REASON_ALLOW_REPLY },
	{ "tcp6 no policy installed", SKB_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .no_policy = true }, DROP, FG_REASON_DENY_NO_POLICY },
	{ "udp6 allowed", SKB_INGRESS, UDP6(B6, A6, 5000, 53),
	  { .rules = { ALLOW(ID_B, ID_A, 53, UDP, INGRESS) } }, PASS, FG_REASON_ALLOW_POLICY },
	{ "arp is not ours to judge", SKB_INGRESS, ARP(B4, A4), { .no_policy = true }, PASS,
	  NOT_COUNTED },
	{ "tcp4 encrypted by policy, arriving directly: denied", SKB_INGRESS,
	  TCP4(B4, A4, 50000, 8080, SYN), { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) } },
	  DROP, FG_REASON_DENY_NO_TUNNEL },
	{ "tcp4 the redirect listener's last ACK after close()", SKB_INGRESS,
	  TCP4(TUN4, A4, TUN_PORT, 40000, ACK), { .no_policy = true }, PASS,
	  FG_REASON_ALLOW_ESTABLISHED },
	{ "tcp4 through the tunnel: judged as its caller", SKB_INGRESS,
	  TCP4(X4, A4, 45000, 8080, SYN),
	  { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_B) },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 through the tunnel, mtls required: the tunnel is the mtls", SKB_INGRESS,
	  TCP4(X4, A4, 45000, 8080, SYN),
	  { .rules = { ALLOW_TUN_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_B) },
	  PASS, FG_REASON_ALLOW_POLICY },
	{ "tcp4 through the tunnel from a caller policy does not allow", SKB_INGRESS,
	  TCP4(X4, A4, 45000, 8080, SYN),
	  { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_C) },
	  DROP, FG_REASON_DENY_POLICY },
	{ "tcp4 through the tunnel from a quarantined caller", SKB_INGRESS,
	  TCP4(X4, A4, 45000, 8080, SYN),
	  { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_B),
	    .quarantine = { Q_ID(ID_B) } },
	  DROP, FG_REASON_DENY_QUARANTINE_PEER },
	{ "tcp4 another port of the tunnel's address is nobody", SKB_INGRESS,
	  TCP4(X4, A4, 45001, 8080, SYN),
	  { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) }, TUN_PEER(X4, 45000, ID_B) },
	  DROP, FG_REASON_DENY_UNKNOWN_PEER },
};

/* --- TC: the node perimeter (identities from fg_ipcache only) ------------ */

static const struct row tc_rows[] = {
	{ "egress tcp4 allowed by exact entry", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "egress tcp4 encrypted by policy, sent directly: denied", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN), { .rules = { ALLOW_TUN(ID_A, ID_B, 80, TCP, EGRESS) } },
	  SHOT, FG_REASON_DENY_NO_TUNNEL },
	{ "ingress tcp4 encrypted by policy, arriving directly: denied", TC_INGRESS,
	  TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW_TUN(ID_B, ID_A, 8080, TCP, INGRESS) } }, SHOT,
	  FG_REASON_DENY_NO_TUNNEL },
	{ "egress tcp4 default deny", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 443, TCP, EGRESS) } }, SHOT, FG_REASON_DENY_POLICY },
	{ "egress tcp4 deny entry overrides allow", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS), DENY(ID_A, ID_B, 0, TCP, EGRESS) } },
	  SHOT, FG_REASON_DENY_RULE },
	{ "egress tcp4 wildcard port", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 0, TCP, EGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "egress tcp4 wildcard peer", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 80, TCP, EGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "egress tcp4 the cgroup plays no part", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .no_cgroup = true }, OK,
	  FG_REASON_ALLOW_POLICY },
	{ "egress tcp4 quarantined source", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_A) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_LOCAL },
	{ "egress tcp4 quarantined destination", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_PEER },
	{ "egress tcp4 quarantined trust domain", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_TD(TD_B) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_TD },
	{ "egress tcp4 unknown destination", TC_EGRESS, TCP4(A4, X4, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } }, SHOT, FG_REASON_DENY_UNKNOWN_PEER },
	{ "egress tcp4 mtls required, no auth entry", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) } }, SHOT,
	  FG_REASON_DENY_AUTH_MISSING },
	{ "egress tcp4 mtls required, auth expired", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OLD(ID_A, ID_B) } },
	  SHOT, FG_REASON_DENY_AUTH_EXPIRED },
	{ "egress tcp4 mtls required, auth valid", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OK(ID_A, ID_B) } },
	  OK, FG_REASON_ALLOW_POLICY },
	{ "egress tcp4 no policy installed", TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN),
	  { .no_policy = true }, SHOT, FG_REASON_DENY_NO_POLICY },
	{ "egress tcp4 stateless reply of an allowed ingress connection", TC_EGRESS,
	  TCP4(A4, B4, 8080, 50000, SYNACK),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, OK, FG_REASON_ALLOW_REPLY },
	{ "egress tcp4 no local workload on either side", TC_EGRESS, TCP4(B4, C4, 40000, 80, SYN),
	  { .no_policy = true }, OK, FG_REASON_ALLOW_UNMANAGED },
	{ "egress tcp4 unknown addresses on both sides", TC_EGRESS, TCP4(X4, Y4, 40000, 80, SYN),
	  { .no_policy = true }, OK, FG_REASON_ALLOW_UNMANAGED },
	{ "egress udp4 allowed, with payload", TC_EGRESS, UDP4(A4, B4, 5000, 53, .payload = 100),
	  { .rules = { ALLOW(ID_A, ID_B, 53, UDP, EGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "egress udp4 default deny", TC_EGRESS, UDP4(A4, B4, 5000, 53),
	  { .rules = { ALLOW(ID_A, ID_B, 53, TCP, EGRESS) } }, SHOT, FG_REASON_DENY_POLICY },
	{ "egress tcp6 allowed by exact entry", TC_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "egress tcp6 default deny", TC_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 81, TCP, EGRESS) } }, SHOT, FG_REASON_DENY_POLICY },
	{ "egress tcp6 quarantined destination", TC_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_PEER },
	{ "egress tcp6 mtls required, auth valid", TC_EGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW_MTLS(ID_A, ANY, 80, TCP, EGRESS) }, .auth = { AUTH_OK(ID_A, ID_B) } },
	  OK, FG_REASON_ALLOW_POLICY },
	{ "egress udp6 no local workload on either side", TC_EGRESS, UDP6(C6, X6, 5000, 53),
	  { .rules = { ALLOW(ID_A, ANY, 0, UDP, EGRESS) } }, OK, FG_REASON_ALLOW_UNMANAGED },
	{ "ingress tcp4 allowed by exact entry", TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "ingress tcp4 default deny", TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_A, ID_B, 8080, TCP, EGRESS) } }, SHOT, FG_REASON_DENY_POLICY },
	{ "ingress tcp4 deny entry overrides wildcard allow", TC_INGRESS,
	  TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 0, TCP, INGRESS), DENY(ANY, ID_A, 8080, TCP, INGRESS) } },
	  SHOT, FG_REASON_DENY_RULE },
	{ "ingress tcp4 quarantined source", TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_ID(ID_B) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_PEER },
	{ "ingress tcp4 quarantined destination", TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_ID(ID_A) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_LOCAL },
	{ "ingress tcp4 quarantined trust domain of the destination", TC_INGRESS,
	  TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_TD(TD_A) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_TD },
	{ "ingress tcp4 unknown source", TC_INGRESS, TCP4(X4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 0, TCP, INGRESS) } }, SHOT, FG_REASON_DENY_UNKNOWN_PEER },
	{ "ingress tcp4 mtls required, no auth entry", TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) } }, SHOT,
	  FG_REASON_DENY_AUTH_MISSING },
	{ "ingress tcp4 spoofed source: a local workload's address from outside", TC_INGRESS,
	  TCP4(A4, C4, 40000, 80, SYN), { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } }, SHOT,
	  FG_REASON_DENY_SPOOF },
	{ "ingress tcp4 no policy installed", TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN),
	  { .no_policy = true }, SHOT, FG_REASON_DENY_NO_POLICY },
	{ "ingress tcp4 stateless reply of an allowed egress connection", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, OK, FG_REASON_ALLOW_REPLY },
	{ "ingress tcp4 no local workload on either side", TC_INGRESS, TCP4(B4, C4, 40000, 80, SYN),
	  { .no_policy = true }, OK, FG_REASON_ALLOW_UNMANAGED },
	{ "ingress udp4 allowed", TC_INGRESS, UDP4(B4, A4, 5000, 53),
	  { .rules = { ALLOW(ID_B, ID_A, 53, UDP, INGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "ingress tcp6 allowed by exact entry", TC_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, OK, FG_REASON_ALLOW_POLICY },
	{ "ingress tcp6 default deny", TC_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, UDP, INGRESS) } }, SHOT, FG_REASON_DENY_POLICY },
	{ "ingress tcp6 quarantined trust domain of the source", TC_INGRESS,
	  TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) }, .quarantine = { Q_TD(TD_B) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_TD },
	{ "ingress tcp6 unknown source", TC_INGRESS, TCP6(X6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW(ANY, ID_A, 0, TCP, INGRESS) } }, SHOT, FG_REASON_DENY_UNKNOWN_PEER },
	{ "ingress tcp6 spoofed source", TC_INGRESS, TCP6(A6, B6, 40000, 80, SYN),
	  { .rules = { ALLOW(ID_A, ANY, 0, TCP, EGRESS) } }, SHOT, FG_REASON_DENY_SPOOF },
	{ "ingress tcp6 mtls required, auth expired", TC_INGRESS, TCP6(B6, A6, 50000, 8080, SYN),
	  { .rules = { ALLOW_MTLS(ID_B, ID_A, 8080, TCP, INGRESS) },
	    .auth = { AUTH_OLD(ID_A, ID_B) } },
	  SHOT, FG_REASON_DENY_AUTH_EXPIRED },
	{ "ingress tcp6 stateless reply of an allowed egress connection", TC_INGRESS,
	  TCP6(B6, A6, 80, 40000, ACK),
	  { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, OK, FG_REASON_ALLOW_REPLY },
	{ "ingress tcp6 no local workload on either side", TC_INGRESS,
	  TCP6(C6, B6, 40000, 80, SYN), { .no_policy = true }, OK, FG_REASON_ALLOW_UNMANAGED },
	{ "egress arp passes untouched", TC_EGRESS, ARP(A4, B4), { .no_policy = true }, OK,
	  NOT_COUNTED },
	{ "ingress arp passes untouched", TC_INGRESS, ARP(B4, A4), { .no_policy = true }, OK,
	  NOT_COUNTED },
};

/* --- TC flow table: rows whose first packet builds the state ------------- */

#define TC_SYN_OUT { TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN), OK }

static const struct row tc_flow_rows[] = {
	{ "reply of a flow opened from here is established", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } },
	  OK, FG_REASON_ALLOW_ESTABLISHED, .before = TC_SYN_OUT },
	{ "next packet of a flow opened from here is established", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, ACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, OK,
	  FG_REASON_ALLOW_ESTABLISHED, .before = TC_SYN_OUT },
	{ "reply of a flow opened from outside is established", TC_EGRESS,
	  TCP4(A4, B4, 8080, 50000, SYNACK),
	  { .rules = { ALLOW(ID_B, ID_A, 8080, TCP, INGRESS) } }, OK, FG_REASON_ALLOW_ESTABLISHED,
	  .before = { TC_INGRESS, TCP4(B4, A4, 50000, 8080, SYN), OK } },
	{ "udp6 reply of a flow opened from here is established", TC_INGRESS,
	  UDP6(B6, A6, 53, 5000), { .rules = { ALLOW(ID_A, ID_B, 53, UDP, EGRESS) } }, OK,
	  FG_REASON_ALLOW_ESTABLISHED, .before = { TC_EGRESS, UDP6(A6, B6, 5000, 53), OK } },
	{ "a denied first packet leaves no flow behind", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK), { .rules = { ALLOW(ID_A, ID_B, 443, TCP, EGRESS) } },
	  SHOT, FG_REASON_DENY_POLICY,
	  .before = { TC_EGRESS, TCP4(A4, B4, 40000, 80, SYN), SHOT } },
	{ "a new policy generation judges the flow again: now denied", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } },
	  SHOT, FG_REASON_DENY_POLICY, .before = TC_SYN_OUT,
	  .then = &(const struct world){ .gen = GEN_NEXT } },
	{ "a new policy generation judges the flow again: still allowed", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } },
	  OK, FG_REASON_ALLOW_REPLY, .before = TC_SYN_OUT,
	  .then = &(const struct world){ .gen = GEN_NEXT,
					 .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } } },
	{ "quarantine of the peer stops an established flow", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } },
	  SHOT, FG_REASON_DENY_QUARANTINE_PEER, .before = TC_SYN_OUT,
	  .then = &(const struct world){ .quarantine = { Q_ID(ID_B) } } },
	{ "quarantine of the local side stops an established flow", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, ACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, SHOT,
	  FG_REASON_DENY_QUARANTINE_LOCAL, .before = TC_SYN_OUT,
	  .then = &(const struct world){ .quarantine = { Q_ID(ID_A) } } },
	{ "trust domain quarantine stops an established flow", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, ACK), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } }, SHOT,
	  FG_REASON_DENY_QUARANTINE_TD, .before = TC_SYN_OUT,
	  .then = &(const struct world){ .quarantine = { Q_TD(TD_B) } } },
	{ "a SYN against a known flow's direction is judged by policy", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYN), { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS) } },
	  SHOT, FG_REASON_DENY_POLICY, .before = TC_SYN_OUT },
	{ "expired auth stops an established mtls flow", TC_INGRESS,
	  TCP4(B4, A4, 80, 40000, ACK),
	  { .rules = { ALLOW_MTLS(ID_A, ID_B, 80, TCP, EGRESS) },
	    .auth = { AUTH_OK(ID_A, ID_B) } },
	  SHOT, FG_REASON_DENY_AUTH_EXPIRED, .before = TC_SYN_OUT,
	  .then = &(const struct world){ .auth = { AUTH_OLD(ID_A, ID_B) } } },
};

/* --- malformed packets, every program ------------------------------------ */

#define ALLOW_A_B_80 { .rules = { ALLOW(ID_A, ID_B, 80, TCP, EGRESS), \
				  ALLOW(ID_A, ID_B, 80, UDP, EGRESS) } }

static const struct row malformed_rows[] = {
	{ "skb egress: ipv4 header cut short (ihl 15, 40 bytes present)", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .ihl = 15, .truncate = 40), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: ipv4 header length below 20 bytes (ihl 4)", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .ihl = 4), ALLOW_A_B_80, DROP, FG_REASON_DENY_MALFORMED },
	{ "skb egress: tcp header cut short", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .truncate = 10), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: udp header cut short", SKB_EGRESS,
	  UDP4(A4, B4, 5000, 80, .truncate = 4), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: version 6 in an ipv4 frame", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .version = 6), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: ipv4 non-first fragment", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, ACK, .frag_offset = 185), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: ipv4 first fragment is judged by its ports", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .more_frags = true), ALLOW_A_B_80, PASS,
	  FG_REASON_ALLOW_POLICY },
	{ "skb egress: version 4 in an ipv6 frame", SKB_EGRESS,
	  TCP6(A6, B6, 40000, 80, SYN, .version = 4), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: ipv6 tcp header cut short", SKB_EGRESS,
	  TCP6(A6, B6, 40000, 80, SYN, .truncate = 10), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: ipv6 extension header cut short", SKB_EGRESS,
	  TCP6(A6, B6, 40000, 80, SYN, .v6_dstopts = 1, .truncate = 27), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: ipv6 non-first fragment", SKB_EGRESS,
	  UDP6(A6, B6, 5000, 80, .v6_frag = true, .frag_offset = 100), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb egress: malformed before any identity", SKB_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .truncate = 10), { .no_cgroup = true, .no_policy = true },
	  DROP, FG_REASON_DENY_MALFORMED },
	{ "skb ingress: tcp header cut short", SKB_INGRESS,
	  TCP4(B4, A4, 80, 40000, SYNACK, .truncate = 1), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "skb ingress: ipv6 udp header cut short", SKB_INGRESS,
	  UDP6(B6, A6, 80, 5000, .truncate = 7), ALLOW_A_B_80, DROP,
	  FG_REASON_DENY_MALFORMED },
	{ "tc egress: ipv4 header cut short (ihl 15, 40 bytes present)", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .ihl = 15, .truncate = 40), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc egress: ipv4 header length below 20 bytes (ihl 4)", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .ihl = 4), ALLOW_A_B_80, SHOT, FG_REASON_DENY_MALFORMED },
	{ "tc egress: tcp header cut short", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .truncate = 10), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc egress: version 6 in an ipv4 frame", TC_EGRESS,
	  TCP4(A4, B4, 40000, 80, SYN, .version = 6), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc egress: ipv4 non-first fragment", TC_EGRESS,
	  UDP4(A4, B4, 5000, 80, .frag_offset = 3), ALLOW_A_B_80, SHOT, FG_REASON_DENY_MALFORMED },
	{ "tc egress: non-first fragment between unmanaged hosts passes", TC_EGRESS,
	  UDP4(B4, C4, 5000, 80, .frag_offset = 3), ALLOW_A_B_80, OK, FG_REASON_ALLOW_UNMANAGED },
	{ "tc ingress: ipv6 non-first fragment between unmanaged hosts passes", TC_INGRESS,
	  UDP6(C6, B6, 5000, 80, .v6_frag = true, .frag_offset = 100), ALLOW_A_B_80, OK,
	  FG_REASON_ALLOW_UNMANAGED },
	{ "tc ingress: udp header cut short", TC_INGRESS,
	  UDP4(B4, A4, 80, 5000, .truncate = 3), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc ingress: version 4 in an ipv6 frame", TC_INGRESS,
	  TCP6(B6, A6, 80, 40000, SYNACK, .version = 4), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc ingress: ipv6 tcp header cut short", TC_INGRESS,
	  TCP6(B6, A6, 80, 40000, SYNACK, .truncate = 19), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc ingress: more ipv6 extension headers than are walked", TC_INGRESS,
	  TCP6(B6, A6, 80, 40000, SYNACK, .v6_dstopts = 5),
	  ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
	{ "tc ingress: ipv6 extension header cut short", TC_INGRESS,
	  TCP6(B6, A6, 80, 40000, SYNACK, .v6_dstopts = 2, .truncate = 33), ALLOW_A_B_80, SHOT,
	  FG_REASON_DENY_MALFORMED },
};

/* --- the harness --------------------------------------------------------- */

enum {
	MAX_EVENTS = 8,
};

struct event_log {
	struct fg_event ev[MAX_EVENTS];
	int n;			/* events seen, may exceed MAX_EVENTS */
};

struct harness {
	struct fedguard *skel;
	struct ring_buffer *rb;
	struct event_log log;
	const struct btf *btf;
	__u64 cgroup_id;
};

#define MAP_FD(h, name) bpf_map__fd((h)->skel->maps.name)

static bool is_tc(enum prog p)
{
	return p == TC_EGRESS || p == TC_INGRESS;
}

static struct bpf_program *prog_of(const struct harness *h, enum prog p)
{
	switch (p) {
	case SKB_EGRESS:
		return h->skel->progs.fg_skb_egress;
	case SKB_INGRESS:
		return h->skel->progs.fg_skb_ingress;
	case TC_EGRESS:
		return h->skel->progs.fg_tc_egress;
	case TC_INGRESS:
		return h->skel->progs.fg_tc_ingress;
	default:
		return NULL;
	}
}

static __u8 hook_of(enum prog p)
{
	static const __u8 hooks[] = {
		[SKB_EGRESS] = FG_HOOK_SKB_EGRESS,
		[SKB_INGRESS] = FG_HOOK_SKB_INGRESS,
		[TC_EGRESS] = FG_HOOK_TC_EGRESS,
		[TC_INGRESS] = FG_HOOK_TC_INGRESS,
	};

	return hooks[p];
}

/* The enumerator's name from the object's BTF, without "FG_REASON_". */
static const char *reason_name(const struct harness *h, __u32 reason)
{
	__s32 id = btf__find_by_name_kind(h->btf, "fg_reason", BTF_KIND_ENUM);
	const struct btf_type *t = id > 0 ? btf__type_by_id(h->btf, id) : NULL;
	const char *name;

	if (reason == NOT_COUNTED)
		return "nothing";
	for (int i = 0; t && i < btf_vlen(t); i++) {
		if ((__u32)btf_enum(t)[i].val != reason)
			continue;
		name = btf__name_by_offset(h->btf, btf_enum(t)[i].name_off);
		return strncmp(name, "FG_REASON_", 10) == 0 ? name + 10 : name;
	}
	return "(not in BTF)";
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct event_log *log = ctx;

	if (size == sizeof(struct fg_event) && log->n < MAX_EVENTS)
		memcpy(&log->ev[log->n], data, size);
	log->n++;
	return 0;
}

/* Forgets what was logged, then logs what fg_events holds now. */
static void events_collect(struct harness *h, const char *row)
{
	int r;

	h->log.n = 0;
	r = ring_buffer__consume(h->rb);
	cr_assert_geq(r, 0, "%s: read fg_events: %s", row, strerror(-r));
}

static void harness_open(struct harness *h)
{
	int r;

	fg_test_require_root_bpf();
	r = fg_test_cgroup_self_id(&h->cgroup_id);
	if (r < 0)
		fg_test_unavailable("no cgroup v2 id for this process: %s", strerror(-r));

	h->skel = fedguard__open();
	cr_assert_not_null(h->skel, "open the fedguard skeleton: %s", strerror(errno));
	/* the agent's redirect listener, as --tunnel-listen sets it */
	h->skel->rodata->cfg_tun_port = TUN_PORT;
	inet_pton(AF_INET, TUN4, (void *)&h->skel->rodata->cfg_tun_addr4);
	cr_assert_eq(fedguard__load(h->skel), 0, "load the fedguard skeleton: %s",
		     strerror(errno));
	h->rb = ring_buffer__new(MAP_FD(h, fg_events), on_event, &h->log, NULL);
	cr_assert_not_null(h->rb, "ring buffer on fg_events: %s", strerror(errno));
	h->btf = bpf_object__btf(h->skel->obj);
	cr_assert_not_null(h->btf, "the fedguard object carries no BTF");
}

static void harness_close(struct harness *h)
{
	ring_buffer__free(h->rb);
	fedguard__destroy(h->skel);
}

#define _cleanup_harness_ __attribute__((cleanup(harness_close)))

/* Setup steps must work; a failure here is the harness's, not a verdict. */
static void must(int r, const char *row, const char *what)
{
	cr_assert_eq(r, 0, "%s: %s: %s", row, what, strerror(-r));
}

/* Every map empty, every counter zero, no event pending. */
static void harness_reset(struct harness *h, const char *row)
{
	must(fg_test_map_clear(MAP_FD(h, fg_cgroups)), row, "clear fg_cgroups");
	must(fg_test_map_clear(MAP_FD(h, fg_ipcache)), row, "clear fg_ipcache");
	must(fg_test_map_clear(MAP_FD(h, fg_quarantine)), row, "clear fg_quarantine");
	must(fg_test_map_clear(MAP_FD(h, fg_auth)), row, "clear fg_auth");
	must(fg_test_map_clear(MAP_FD(h, fg_sockets)), row, "clear fg_sockets");
	must(fg_test_map_clear(MAP_FD(h, fg_flows)), row, "clear fg_flows");
	must(fg_test_map_clear(MAP_FD(h, fg_tun_peer)), row, "clear fg_tun_peer");
	must(fg_test_policy_remove(MAP_FD(h, fg_policy_slot)), row, "empty fg_policy_slot");
	must(fg_test_counters_zero(MAP_FD(h, fg_counters)), row, "zero fg_counters");
	events_collect(h, row);
}

static const struct endpoint *endpoint_of(__u32 id)
{
	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		if (endpoints[i].id == id)
			return &endpoints[i];
	}
	return NULL;
}

/* The endpoints in fg_ipcache and, unless the row says not, our cgroup. */
static void world_base(struct harness *h, const struct row *r)
{
	struct fg_cgroup_info cg = { .identity = ID_A, .td = TD_A };

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		const struct endpoint *e = &endpoints[i];
		struct fg_ipcache_value v = { .identity = e->id, .td = e->td, .flags = e->flags };
		__u8 family;

		must(fg_test_addr_parse(e->node, &family, v.node), r->name, e->node);
		must(fg_test_ipcache_put(MAP_FD(h, fg_ipcache), e->addr, &v), r->name, e->addr);
	}
	if (r->w.no_cgroup)
		return;
	must(bpf_map_update_elem(MAP_FD(h, fg_cgroups), &h->cgroup_id, &cg, BPF_ANY), r->name,
	     "fg_cgroups entry of this process's cgroup");
}

static __u64 monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void world_auth(struct harness *h, const struct row *r, const struct auth_entry *a)
{
	const struct endpoint *peer = endpoint_of(a->peer);
	struct fg_auth_key k = { .local_id = a->local, .peer_id = a->peer };
	__u64 now = monotonic_ns();
	struct fg_auth_value v = {
		.expiry_ns = a->state == AUTH_VALID ? now + AUTH_LIFETIME_S * 1000000000ull
						    : now - 1000000000ull,
	};
	__u8 family;

	cr_assert_not_null(peer, "%s: auth entry for identity %u, which has no endpoint", r->name,
			   a->peer);
	must(fg_test_addr_parse(peer->node, &family, k.peer_node), r->name, peer->node);
	must(bpf_map_update_elem(MAP_FD(h, fg_auth), &k, &v, BPF_ANY), r->name, "fg_auth entry");
}

static size_t rules_count(const struct world *w)
{
	size_t n = 0;

	while (n < MAX_RULES && w->rules[n].val.action)
		n++;
	return n;
}

static void world_tun_peer(struct harness *h, const struct row *r, const struct world *w)
{
	const struct endpoint *caller = endpoint_of(w->tun_id);
	struct fg_tun_key k = { .port = htons(w->tun_port) };
	struct fg_tun_peer v = { .identity = w->tun_id };
	__u8 family, addr[16];

	cr_assert_not_null(caller, "%s: tunnel caller %u has no endpoint", r->name, w->tun_id);
	v.td = caller->td;
	must(fg_test_addr_parse(caller->node, &family, v.node), r->name, caller->node);
	must(fg_test_addr_parse(w->tun_addr, &family, addr), r->name, w->tun_addr);
	k.family = family;
	memcpy(k.addr, addr, family == FG_AF_INET ? 4 : 16);
	must(bpf_map_update_elem(MAP_FD(h, fg_tun_peer), &k, &v, BPF_ANY), r->name,
	     "fg_tun_peer entry");
}

/* Policy (when @gen is not 0), quarantine, auth and tunnel entries of @w. */
static void world_apply(struct harness *h, const struct row *r, const struct world *w, __u32 gen)
{
	int slot = MAP_FD(h, fg_policy_slot);

	if (gen && !w->no_policy)
		must(fg_test_policy_install_shaped(slot, gen, w->shape, w->rules, rules_count(w)),
		     r->name, "install the policy");
	for (int i = 0; i < MAX_QUARANTINE && w->quarantine[i].kind; i++) {
		struct fg_quarantine_value v = { .since_ns = 1, .reason = 1 };

		must(bpf_map_update_elem(MAP_FD(h, fg_quarantine), &w->quarantine[i], &v, BPF_ANY),
		     r->name, "fg_quarantine entry");
	}
	for (int i = 0; i < MAX_AUTH && w->auth[i].local; i++)
		world_auth(h, r, &w->auth[i]);
	if (w->tun_addr)
		world_tun_peer(h, r, w);
}

/* Runs @prog on @pkt; the program's return value in @verdict. 0 or -errno. */
static int prog_run(struct harness *h, enum prog p, const struct fg_test_pkt *pkt,
		    __u32 *verdict)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt->data, .data_size_in = pkt->len,
		    .repeat = 1);
	int r = bpf_prog_test_run_opts(bpf_program__fd(prog_of(h, p)), &opts);

	if (r < 0)
		return r;
	*verdict = opts.retval;
	return 0;
}

static void step_run(struct harness *h, const struct row *r, const struct step *s)
{
	struct fg_test_pkt pkt;
	__u32 verdict;

	must(fg_test_pkt_build(&s->pkt, &pkt), r->name, "build the packet of the step before");
	must(prog_run(h, s->prog, &pkt, &verdict), r->name, "run the step before");
	cr_assert_eq(verdict, (__u32)s->verdict, "%s: the step before returned %u, expected %d",
		     r->name, verdict, s->verdict);
}

/* --- the expectations ---------------------------------------------------- */

/* A row whose verdict contradicts its reason is a bug in the table. */
static void row_check(const struct row *r)
{
	bool pass = r->reason == NOT_COUNTED || r->reason < FG_REASON_DENY_POLICY;
	int want = is_tc(r->prog) ? (pass ? OK : SHOT) : (pass ? PASS : DROP);

	cr_assert(r->prog >= SKB_EGRESS && r->prog <= TC_INGRESS, "%s: no program", r->name);
	cr_assert_eq(r->verdict, want, "%s: table row says verdict %d with reason %u", r->name,
		     r->verdict, r->reason);
}

static void expect_verdict(const struct row *r, __u32 verdict)
{
	char pkt[128];

	cr_expect_eq(verdict, (__u32)r->verdict, "%s: %s: verdict %u, expected %d", r->name,
		     fg_test_pkt_str(&r->pkt, pkt, sizeof(pkt)), verdict, r->verdict);
}

/*
 * The expected reason grows by one packet and @bytes, nothing else moves.
 * cgroup_skb counts skb->len from the network header, TC the whole frame.
 */
static void expect_counters(const struct harness *h, const struct row *r, __u32 bytes,
			    const struct fg_counter *before, const struct fg_counter *after)
{
	char moved[1024] = "nothing";
	size_t at = 0;
	bool ok = true;

	for (__u32 i = 0; i < FG_REASON_MAX; i++) {
		__u64 packets = after[i].packets - before[i].packets;
		__u64 grew = after[i].bytes - before[i].bytes;
		bool want = i == r->reason;

		if (packets != want || grew != (want ? bytes : 0))
			ok = false;
		if (packets || grew)
			at += snprintf(moved + at, sizeof(moved) - at, "%s%s +%llu pkt +%llu B",
				       at ? ", " : "", reason_name(h, i),
				       (unsigned long long)packets, (unsigned long long)grew);
		if (at >= sizeof(moved))
			at = sizeof(moved) - 1;
	}
	if (r->reason == NOT_COUNTED)
		cr_expect(ok, "%s: counters moved: %s; expected: nothing", r->name, moved);
	else
		cr_expect(ok, "%s: counters moved: %s; expected: %s +1 pkt +%u B", r->name, moved,
			  reason_name(h, r->reason), bytes);
}

/* A drop leaves one FG_EV_DROP event naming the reason, the hook and the ports. */
static void expect_events(const struct harness *h, const struct row *r)
{
	const struct fg_event *e = &h->log.ev[0];
	bool drop = r->reason != NOT_COUNTED && r->reason >= FG_REASON_DENY_POLICY;

	if (!drop) {
		cr_expect_eq(h->log.n, 0, "%s: %d events for a packet that passes", r->name,
			     h->log.n);
		return;
	}
	cr_expect_eq(h->log.n, 1, "%s: %d events for one dropped packet", r->name, h->log.n);
	if (h->log.n < 1)
		return;
	cr_expect(e->type == FG_EV_DROP && e->reason == r->reason && e->hook == hook_of(r->prog),
		  "%s: event type %u reason %s hook %u, expected drop, %s, hook %u", r->name,
		  e->type, reason_name(h, e->reason), e->hook, reason_name(h, r->reason),
		  hook_of(r->prog));
	if (r->reason == FG_REASON_DENY_MALFORMED)
		return;		/* whatever was parsed before the packet ran out */
	cr_expect(e->proto == r->pkt.proto && ntohs(e->sport) == r->pkt.sport &&
			  ntohs(e->dport) == r->pkt.dport,
		  "%s: event for proto %u port %u -> %u", r->name, e->proto, ntohs(e->sport),
		  ntohs(e->dport));
}

static void row_run(struct harness *h, const struct row *r)
{
	struct fg_counter before[FG_REASON_MAX], after[FG_REASON_MAX];
	struct fg_test_pkt pkt;
	__u32 verdict;

	row_check(r);
	must(fg_test_pkt_build(&r->pkt, &pkt), r->name, "build the packet");
	harness_reset(h, r->name);
	world_base(h, r);
	world_apply(h, r, &r->w, r->w.gen ? r->w.gen : GEN);
	if (r->before.prog)
		step_run(h, r, &r->before);
	if (r->then)
		world_apply(h, r, r->then, r->then->gen);

	events_collect(h, r->name);
	must(fg_test_counters_sum(MAP_FD(h, fg_counters), before), r->name, "read fg_counters");
	must(prog_run(h, r->prog, &pkt, &verdict), r->name, "BPF_PROG_TEST_RUN");
	must(fg_test_counters_sum(MAP_FD(h, fg_counters), after), r->name, "read fg_counters");
	events_collect(h, r->name);

	expect_verdict(r, verdict);
	expect_counters(h, r, pkt.len - (is_tc(r->prog) ? 0 : FG_TEST_ETH_HLEN), before, after);
	expect_events(h, r);
}

static void table_run(const struct row *rows, size_t n)
{
	_cleanup_harness_ struct harness h = { 0 };

	harness_open(&h);
	for (size_t i = 0; i < n; i++)
		row_run(&h, &rows[i]);
}

#define TABLE(rows) table_run(rows, sizeof(rows) / sizeof(rows[0]))

Test(verdict, cgroup_skb_egress)
{
	TABLE(skb_egress_rows);
}

Test(verdict, cgroup_skb_ingress)
{
	TABLE(skb_ingress_rows);
}

Test(verdict, tc)
{
	TABLE(tc_rows);
}

Test(verdict, tc_flow_table)
{
	TABLE(tc_flow_rows);
}

Test(verdict, malformed)
{
	TABLE(malformed_rows);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Datapath cost per decision (issue 7, item 3): nanoseconds per packet of
 * fedguard's TC and cgroup_skb programs under BPF_PROG_TEST_RUN, against
 * programs of the same types that decide nothing (bench/empty.bpf.c), run
 * in alternation, median over rounds. The difference is the decision.
 *
 * The maps hold a node's worth of state: the policy has POLICY_ENTRIES
 * entries, so its hash lookups are not the cache-hot lookups of a tiny map.
 *
 *   skb egress/ingress  a TCP SYN of an allowed connection, judged from the
 *                       packet (the unbound path: under test_run the socket
 *                       is a dummy whose cookie no binding has; a bound
 *                       socket's packets do less, see docs/BENCHMARKS.md)
 *   tc ingress, new     a SYN of an allowed connection, flow table empty
 *                       before each run (repeat 1: the entry it writes would
 *                       make the next one a known flow)
 *   tc ingress, known   a packet of a flow in the flow table
 *   tc egress, reply    the reply of that flow
 *
 * With --floor N it measures instead the kernel's floor for item 6: a
 * new policy map of N entries filled and swapped into fg_policy_slot with
 * one syscall per entry (what any agent must do at least), and one entry
 * updated in place; it prints `floor_ms=X one_us=Y`.
 *
 *   bench_prog [--quick]
 *   bench_prog --floor N
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fedguard/abi.h>
/* after abi.h: the skeleton's rodata names the ABI's types */
#include "fedguard.skel.h"
#include "empty.skel.h"

#include "lib/cgroup.h"
#include "lib/mapfill.h"
#include "lib/packet.h"

enum {
	ID_A = 1000,		/* this process's cgroup, at A4: the local workload */
	ID_B = 2000,		/* a remote peer at B4 */
	ID_FILL = 100000,	/* identities of the filler entries */
	TD_A = 10,
	TD_B = 20,
	GEN = 7,
	POLICY_ENTRIES = 100000,
	MAX_SINGLES = 4000,
};

#define A4 "10.0.0.1"
#define B4 "10.0.1.2"

struct bench {
	struct fedguard *fg;
	struct empty *empty;
	int rounds;	/* of `repeat` runs each */
	int repeat;
	int singles;	/* runs with repeat 1 */
};

static int die(const char *what, int r)
{
	fprintf(stderr, "bench_prog: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

#define TCP4(s, d, sp, dp, fl)                                                                     \
	{ .family = 4, .proto = IPPROTO_TCP, .src = s, .dst = d, .sport = sp, .dport = dp,         \
	  .tcp_flags = fl }

static const struct fg_test_pkt_spec syn_out = TCP4(A4, B4, 40000, 80, FG_TEST_SYN);
static const struct fg_test_pkt_spec syn_in = TCP4(B4, A4, 40000, 80, FG_TEST_SYN);
static const struct fg_test_pkt_spec ack_in = TCP4(B4, A4, 40000, 80, FG_TEST_ACK);
static const struct fg_test_pkt_spec ack_out = TCP4(A4, B4, 80, 40000, FG_TEST_ACK);

/* --- the world ---------------------------------------------------------------------------- */

static void put_endpoint(struct bench *b, const char *addr, __u32 id, __u32 td, __u32 flags)
{
	struct fg_ipcache_value v = { .identity = id, .td = td, .flags = flags };
	__u8 family;
	int r = fg_test_addr_parse("::ffff:192.0.2.1", &family, v.node);

	if (!r)
		r = fg_test_ipcache_put(bpf_map__fd(b->fg->maps.fg_ipcache), addr, &v);
	if (r)
		die("fg_ipcache", r);
}

/* A and B can talk on port 80 both ways; the rest of the entries name other peers. */
static void put_policy(struct bench *b)
{
	struct fg_test_rule *rules = calloc(POLICY_ENTRIES, sizeof(*rules));
	struct fg_policy_value allow = { .action = FG_ACT_ALLOW, .rule_id = 1 };
	int r;

	if (!rules)
		die("policy", -ENOMEM);
	rules[0] = (struct fg_test_rule){ { ID_A, ID_B, 80, IPPROTO_TCP, FG_DIR_EGRESS }, allow };
	rules[1] = (struct fg_test_rule){ { ID_B, ID_A, 80, IPPROTO_TCP, FG_DIR_INGRESS }, allow };
	for (__u32 i = 2; i < POLICY_ENTRIES; i++) {
		struct fg_policy_key k = { ID_A, ID_FILL + i / 10, (__u16)(9000 + i % 10),
					   IPPROTO_TCP, FG_DIR_EGRESS };

		rules[i] = (struct fg_test_rule){ k, allow };
	}
	/* exact rules only: the shape the agent writes for them (policy_map_shape()) */
	r = fg_test_policy_install_shaped(bpf_map__fd(b->fg->maps.fg_policy_slot), GEN,
					  FG_SHAPE_NO_ANY_PEER | FG_SHAPE_NO_ANY_PORT, rules,
				   POLICY_ENTRIES);
	free(rules);
	if (r)
		die("fg_policy", r);
}

static void world(struct bench *b)
{
	struct fg_cgroup_info cg = { .identity = ID_A, .td = TD_A };
	__u64 cgid;
	int r = fg_test_cgroup_self_id(&cgid);

	if (r)
		die("this process's cgroup v2 id", r);
	r = bpf_map_update_elem(bpf_map__fd(b->fg->maps.fg_cgroups), &cgid, &cg, BPF_ANY);
	if (r)
		die("fg_cgroups", r);
	put_endpoint(b, A4, ID_A, TD_A, FG_IPC_LOCAL);
	put_endpoint(b, B4, ID_B, TD_B, 0);
	put_policy(b);
}

/* --- running -------------------------------------------------------------------------------------- */

/* One test run: nanoseconds per repetition; exits when the kernel refuses or @want differs. */
static double run(const struct bpf_program *p, const struct fg_test_pkt_spec *spec, int repeat,
		  int want)
{
	struct fg_test_pkt pkt;
	int r = fg_test_pkt_build(spec, &pkt);
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data, .data_size_in = pkt.len,
		    .repeat = repeat);

	if (r)
		die("packet", r);
	r = bpf_prog_test_run_opts(bpf_program__fd(p), &opts);
	if (r)
		die(bpf_program__name(p), r);
	if ((int)opts.retval != want) {
		fprintf(stderr, "bench_prog: %s returned %d, not %d: the world is not what the "
			"case needs\n", bpf_program__name(p), (int)opts.retval, want);
		exit(1);
	}
	return opts.duration;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void result(const char *figure, double fg, double empty)
{
	printf("@result|3 datapath|%s: fedguard|%.1f|ns/pkt|%.1f|-\n", figure, fg, empty);
	printf("@result|3 datapath|%s: decision (fedguard - empty)|%.1f|ns/pkt|-|value<150\n",
	       figure, fg - empty);
}

struct prog_case {
	const char *figure;
	const struct bpf_program *fg, *empty;
	const struct fg_test_pkt_spec *pkt;
	int verdict;		/* of both programs: the packet is allowed */
	bool fresh_flow;	/* empty fg_flows before each run: repeat 1 */
};

static void case_run(struct bench *b, const struct prog_case *c)
{
	int n = c->fresh_flow ? b->singles : b->rounds;
	int repeat = c->fresh_flow ? 1 : b->repeat;
	static double fg[MAX_SINGLES], empty[MAX_SINGLES];

	for (int i = 0; i < n; i++) {
		if (c->fresh_flow)
			fg_test_map_clear(bpf_map__fd(b->fg->maps.fg_flows));
		/* alternate which goes first, so that neither always runs on warmer caches */
		if (i % 2) {
			fg[i] = run(c->fg, c->pkt, repeat, c->verdict);
			empty[i] = run(c->empty, c->pkt, repeat, c->verdict);
		} else {
			empty[i] = run(c->empty, c->pkt, repeat, c->verdict);
			fg[i] = run(c->fg, c->pkt, repeat, c->verdict);
		}
	}
	result(c->figure, median(fg, n), median(empty, n));
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Median of 5 builds and swaps of an n-entry map, and of 101 single updates. */
static int floor_of(struct bench *b, long n)
{
	struct fg_test_rule *rules = calloc((size_t)n, sizeof(*rules));
	int slot = bpf_map__fd(b->fg->maps.fg_policy_slot), fd, r = 0;
	double swap[5], one[101];
	__u32 zero = 0, id = 0;

	if (!rules || n < 1 || n > 1000000)
		die("--floor", -EINVAL);
	for (long i = 0; i < n; i++) {
		struct fg_policy_key k = { ID_A, (__u32)(ID_FILL + i / 10), (__u16)(9000 + i % 10),
					   IPPROTO_TCP, FG_DIR_EGRESS };

		rules[i] = (struct fg_test_rule){ k, { .action = FG_ACT_ALLOW, .rule_id = 1 } };
	}
	for (int i = 0; i < 5 && !r; i++) {
		double t0 = now_ms();

		r = fg_test_policy_install(slot, GEN + (__u32)i, rules, (size_t)n);
		swap[i] = now_ms() - t0;
	}
	/* from userspace, a slot of an array of maps reads as the inner map's id */
	fd = -1;
	if (!r && bpf_map_lookup_elem(slot, &zero, &id) == 0)
		fd = bpf_map_get_fd_by_id(id);
	for (int i = 0; i < 101 && fd >= 0 && !r; i++) {
		double t0 = now_ms();

		rules[0].val.rule_id = (__u32)i + 2;
		r = bpf_map_update_elem(fd, &rules[0].key, &rules[0].val, BPF_EXIST);
		one[i] = now_ms() - t0;
	}
	free(rules);
	if (r || fd < 0)
		die("the kernel floor", r ? r : fd);
	close(fd);
	printf("floor_ms=%.3f one_us=%.2f\n", median(swap, 5), median(one, 101) * 1e3);
	return 0;
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	struct bench b = { .rounds = quick ? 5 : 31, .repeat = quick ? 20000 : 200000,
			   .singles = quick ? 200 : MAX_SINGLES };

	bool floor = argc == 3 && strcmp(argv[1], "--floor") == 0;

	if (!floor && (argc > 2 || (argc == 2 && !quick))) {
		fprintf(stderr, "usage: bench_prog [--quick]\n       bench_prog --floor N\n");
		return 2;
	}
	b.fg = fedguard__open_and_load();
	if (!b.fg)
		die("load the fedguard object", -errno);
	b.empty = empty__open_and_load();
	if (!b.empty)
		die("load the empty programs", -errno);
	if (floor)
		return floor_of(&b, atol(argv[2]));
	world(&b);

	const struct prog_case cases[] = {
		{ "cgroup_skb egress, SYN judged from the packet", b.fg->progs.fg_skb_egress,
		  b.empty->progs.fg_empty_skb_eg, &syn_out, 1 },
		{ "cgroup_skb ingress, SYN judged from the packet", b.fg->progs.fg_skb_ingress,
		  b.empty->progs.fg_empty_skb_in, &syn_in, 1 },
		{ "tc ingress, new flow (SYN), flow table miss", b.fg->progs.fg_tc_ingress,
		  b.empty->progs.fg_empty_tc, &syn_in, -1, true },
		{ "tc ingress, packet of a known flow", b.fg->progs.fg_tc_ingress,
		  b.empty->progs.fg_empty_tc, &ack_in, -1 },
		{ "tc egress, reply of a known flow", b.fg->progs.fg_tc_egress,
		  b.empty->progs.fg_empty_tc, &ack_out, -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (i == 3)	/* the known flow: one SYN writes its entry */
			run(b.fg->progs.fg_tc_ingress, &syn_in, 1, -1);
		case_run(&b, &cases[i]);
	}
	empty__destroy(b.empty);
	fedguard__destroy(b.fg);
	return 0;
}

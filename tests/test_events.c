// SPDX-License-Identifier: Apache-2.0
/*
 * agent/events.c, the one reader of fg_events: real drops of the real
 * programs (BPF_PROG_TEST_RUN on a loaded, unattached skeleton) reach the
 * subscribers of their type, and only those.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fedguard/abi.h>
/* after abi.h: the skeleton's rodata struct names the ABI's types */
#include "fedguard.skel.h"

#include "events.h"
#include "lib/packet.h"
#include "lib/require.h"

struct seen {
	int count;
	struct fg_event last;
};

static void record(void *ctx, const struct fg_event *e)
{
	struct seen *s = ctx;

	s->count++;
	s->last = *e;
}

/* One TCP SYN through fg_skb_egress: this process's cgroup has no identity. */
static void run_denied_packet(struct fedguard *skel)
{
	struct fg_test_pkt_spec spec = { .family = 4, .proto = IPPROTO_TCP,
					 .tcp_flags = FG_TEST_SYN, .src = "10.1.0.1",
					 .dst = "10.1.0.2", .sport = 40000, .dport = 80 };
	struct fg_test_pkt pkt;
	LIBBPF_OPTS(bpf_test_run_opts, opts);

	cr_assert_eq(fg_test_pkt_build(&spec, &pkt), 0);
	opts.data_in = pkt.data;
	opts.data_size_in = pkt.len;
	cr_assert_eq(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.fg_skb_egress), &opts), 0);
	cr_assert_eq(opts.retval, 0, "the packet was not dropped");
}

Test(events, drops_reach_their_subscribers_only)
{
	struct seen drops = {}, auth = {};
	struct events *ev;
	struct fedguard *skel;
	int fd;

	fg_test_require_root_bpf();
	skel = fedguard__open_and_load();
	cr_assert_not_null(skel, "load: %s", strerror(errno));
	fd = dup(bpf_map__fd(skel->maps.fg_events));
	cr_assert_eq(events_new(fd, &ev), 0);
	cr_assert_eq(events_subscribe(ev, FG_EV_DROP, record, &drops), 0);
	cr_assert_eq(events_subscribe(ev, FG_EV_AUTH_NEEDED, record, &auth), 0);
	cr_expect_eq(events_subscribe(ev, 0, record, NULL), -EINVAL);

	run_denied_packet(skel);
	run_denied_packet(skel);
	cr_expect_eq(events_consume(ev), 2);
	cr_expect_eq(drops.count, 2);
	cr_expect_eq(auth.count, 0, "an auth subscriber got a drop");
	cr_expect_eq(drops.last.reason, FG_REASON_DENY_NO_IDENTITY);
	cr_expect_eq(drops.last.hook, FG_HOOK_SKB_EGRESS);
	cr_expect_eq(drops.last.proto, IPPROTO_TCP);
	cr_expect_eq(ntohs(drops.last.dport), 80);
	cr_expect_eq(events_read(ev), 2);
	cr_expect_eq(events_unknown(ev), 0);
	cr_expect_eq(events_consume(ev), 0, "events read twice");

	events_close(ev);
	fedguard__destroy(skel);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * agent/flow.c and agent/alerts.c: flow records from events, their JSON,
 * the flow ID both ends of a flow compute, times, filters, and the alert
 * detector fed with records whose times the test chooses.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include <json-c/json.h>

#include "alerts.h"
#include "flow.h"
#include "reason.h"

#define A_ID "spiffe://mesh.test/ns/a"
#define B_ID "spiffe://other.test/ns/b"

/* 2026-01-02T03:04:05.678Z */
#define T0_MS 1767323045678LL

static struct fg_event event(__u8 type, __u16 reason)
{
	struct fg_event e = {
		.ts_ns = 5000000000ULL,
		.cookie = 77,
		.cgroup_id = 1234,
		.local_id = 256,
		.peer_id = 257,
		.rule_id = 2,
		.reason = reason,
		.type = type,
		.hook = FG_HOOK_TC_INGRESS,
		.dir = FG_DIR_INGRESS,
		.proto = IPPROTO_TCP,
		.family = FG_AF_INET,
		.sport = htons(40000),
		.dport = htons(8080),
	};

	inet_pton(AF_INET, "10.0.0.1", e.saddr);
	inet_pton(AF_INET, "10.0.0.2", e.daddr);
	e.peer_node[10] = e.peer_node[11] = 0xff;
	inet_pton(AF_INET, "192.0.2.7", e.peer_node + 12);
	return e;
}

/* A record at T0_MS made from @e, with names. */
static void record(const struct fg_event *e, struct flow_record *r)
{
	cr_assert_eq(flow_from_event(e, T0_MS * 1000000LL - (long long)e->ts_ns, r), 0);
	r->local_name = flow_name_new(B_ID);
	r->peer_name = flow_name_new(A_ID);
	r->rule_name = flow_name_new("b-from-a");
}

static const char *jstr(struct json_object *o, const char *path1, const char *path2)
{
	struct json_object *v = json_object_object_get(o, path1);

	if (path2)
		v = json_object_object_get(v, path2);
	return json_object_get_string(v);
}

Test(flow, drop_event_becomes_a_record_and_its_json)
{
	struct fg_event e = event(FG_EV_DROP, FG_REASON_DENY_POLICY);
	struct flow_record r;
	struct json_object *o;

	record(&e, &r);
	r.flow_id = flow_id(&r);
	cr_expect_eq(r.time_ms, T0_MS);
	cr_expect_eq(r.kind, FLOW_DROP);
	cr_expect_eq(r.verdict, FLOW_V_DENY);
	cr_expect_eq(r.sport, 40000, "ports are host order in records");
	o = flow_to_json(&r, "node1");
	cr_assert_not_null(o);
	cr_expect_str_eq(jstr(o, "type", NULL), "flow");
	cr_expect_str_eq(jstr(o, "time", NULL), "2026-01-02T03:04:05.678Z");
	cr_expect_str_eq(jstr(o, "instance", NULL), "node1");
	cr_expect_str_eq(jstr(o, "event", NULL), "drop");
	cr_expect_str_eq(jstr(o, "verdict", NULL), "deny");
	cr_expect_str_eq(jstr(o, "reason", NULL), "deny_policy");
	cr_expect_str_eq(jstr(o, "hook", NULL), "tc_ingress");
	cr_expect_str_eq(jstr(o, "direction", NULL), "ingress");
	cr_expect_str_eq(jstr(o, "protocol", NULL), "tcp");
	cr_expect_str_eq(jstr(o, "src", NULL), "10.0.0.1");
	cr_expect_str_eq(jstr(o, "dst", NULL), "10.0.0.2");
	cr_expect_eq(json_object_get_int(json_object_object_get(o, "src_port")), 40000);
	cr_expect_eq(json_object_get_int(json_object_object_get(o, "dst_port")), 8080);
	cr_expect_str_eq(jstr(o, "local", "spiffe_id"), B_ID);
	cr_expect_str_eq(jstr(o, "peer", "spiffe_id"), A_ID);
	cr_expect_eq(json_object_get_int(
			     json_object_object_get(json_object_object_get(o, "peer"), "identity")),
		     257);
	cr_expect_str_eq(jstr(o, "peer_node", NULL), "192.0.2.7");
	cr_expect_str_eq(jstr(o, "rule", NULL), "b-from-a");
	cr_expect_eq(json_object_get_int(json_object_object_get(o, "rule_id")), 2);
	cr_expect_eq(json_object_get_uint64(json_object_object_get(o, "cookie")), 77);
	cr_expect_eq(json_object_get_uint64(json_object_object_get(o, "cgroup_id")), 1234);
	cr_expect_eq(strlen(jstr(o, "flow_id", NULL)), 16);
	json_object_put(o);
	flow_record_release(&r);
}

Test(flow, unknown_endpoints_are_null_and_quarantine_drops_are_hits)
{
	struct fg_event e = event(FG_EV_DROP, FG_REASON_DENY_QUARANTINE_PEER);
	struct flow_record r;
	struct json_object *o, *v = NULL;

	memset(e.saddr, 0, sizeof(e.saddr));
	e.sport = 0;
	e.rule_id = 0;
	memset(e.peer_node, 0, sizeof(e.peer_node));
	cr_assert_eq(flow_from_event(&e, 0, &r), 0);
	cr_expect_eq(r.kind, FLOW_QUARANTINE_HIT);
	o = flow_to_json(&r, NULL);
	cr_expect_str_eq(jstr(o, "event", NULL), "quarantine_hit");
	cr_expect(json_object_object_get_ex(o, "src", &v) && !v, "src is not null");
	cr_expect(json_object_object_get_ex(o, "src_port", &v) && !v, "src_port is not null");
	cr_expect(json_object_object_get_ex(o, "peer_node", &v) && !v, "peer_node is not null");
	cr_expect(json_object_object_get_ex(o, "rule", &v) && !v, "rule is not null");
	cr_expect(json_object_object_get_ex(json_object_object_get(o, "local"), "spiffe_id", &v) &&
			  !v,
		  "an unresolved identity has a SPIFFE ID");
	json_object_put(o);

	e = event(FG_EV_AUTH_NEEDED, FG_REASON_DENY_AUTH_MISSING);
	cr_assert_eq(flow_from_event(&e, 0, &r), 0);
	cr_expect_eq(r.kind, FLOW_AUTH_NEEDED);
	cr_expect_eq(r.verdict, FLOW_V_PENDING);
	e.type = 99;
	cr_expect_eq(flow_from_event(&e, 0, &r), -EINVAL, "an unknown event type became a record");
}

Test(flow, both_directions_and_both_nodes_share_the_flow_id)
{
	struct fg_event fwd = event(FG_EV_DROP, FG_REASON_DENY_POLICY), rev = fwd;
	struct flow_record a, b, c;

	memcpy(rev.saddr, fwd.daddr, 16);
	memcpy(rev.daddr, fwd.saddr, 16);
	rev.sport = fwd.dport;
	rev.dport = fwd.sport;
	rev.cookie = 999; /* another node: other cookie, hook, identities */
	rev.hook = FG_HOOK_SKB_EGRESS;
	rev.local_id = 300;
	cr_assert_eq(flow_from_event(&fwd, T0_MS * 1000000LL - 5000000000LL, &a), 0);
	cr_assert_eq(flow_from_event(&rev, T0_MS * 1000000LL - 5000000000LL + 2000000000LL, &b), 0);
	cr_expect_eq(flow_id(&a), flow_id(&b), "the reply direction has another flow ID");

	c = a;
	c.dport = 8081;
	cr_expect_neq(flow_id(&a), flow_id(&c), "another port, same flow ID");
	c = a;
	c.time_ms += FLOW_ID_BUCKET_S * 1000;
	cr_expect_neq(flow_id(&a), flow_id(&c), "another minute, same flow ID");
	c = a;
	c.proto = IPPROTO_UDP;
	cr_expect_neq(flow_id(&a), flow_id(&c), "another protocol, same flow ID");
}

Test(flow, records_without_a_source_are_told_apart_by_socket)
{
	struct fg_event e = event(FG_EV_DROP, FG_REASON_DENY_POLICY);
	struct flow_record a, b;

	memset(e.saddr, 0, sizeof(e.saddr));
	e.sport = 0;
	cr_assert_eq(flow_from_event(&e, 0, &a), 0);
	e.cookie++;
	cr_assert_eq(flow_from_event(&e, 0, &b), 0);
	cr_expect_neq(flow_id(&a), flow_id(&b), "two sockets' connects share a flow ID");
	cr_expect_eq(flow_id(&a), flow_id(&a));
}

Test(flow, times_format_and_parse)
{
	char buf[32];
	__s64 ms = 0;

	cr_assert_eq(flow_time_format(T0_MS, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "2026-01-02T03:04:05.678Z");
	cr_assert_eq(flow_time_parse(buf, &ms), 0);
	cr_expect_eq(ms, T0_MS);
	cr_assert_eq(flow_time_parse("2026-01-02T05:04:05.678+02:00", &ms), 0);
	cr_expect_eq(ms, T0_MS);
	cr_assert_eq(flow_time_parse("2026-01-02T03:04:05Z", &ms), 0);
	cr_expect_eq(ms, T0_MS - 678);
	cr_expect_eq(flow_time_parse("2026-01-02 03:04:05", &ms), -EINVAL, "no zone accepted");
	cr_expect_eq(flow_time_parse("2026-13-02T03:04:05Z", &ms), -EINVAL);
	cr_expect_eq(flow_time_parse("yesterday", &ms), -EINVAL);
	cr_expect_eq(flow_time_parse("2026-01-02T03:04:05.Z", &ms), -EINVAL);
}

Test(flow, filters)
{
	struct fg_event e = event(FG_EV_DROP, FG_REASON_DENY_POLICY);
	struct flow_filter f = {};
	struct flow_record r;

	record(&e, &r);
	cr_expect(flow_filter_match(&f, &r), "an empty filter refused a record");
	f = (struct flow_filter){.verdict = FLOW_V_ALLOW};
	cr_expect_not(flow_filter_match(&f, &r));
	f = (struct flow_filter){.reason = FG_REASON_DENY_POLICY + 1, .port = 8080};
	cr_expect(flow_filter_match(&f, &r));
	f = (struct flow_filter){.reason = FG_REASON_DENY_RULE + 1};
	cr_expect_not(flow_filter_match(&f, &r));
	f = (struct flow_filter){.port = 40000};
	cr_expect(flow_filter_match(&f, &r), "the source port does not match");
	f = (struct flow_filter){.port = 443};
	cr_expect_not(flow_filter_match(&f, &r));
	f = (struct flow_filter){.identity = A_ID};
	cr_expect(flow_filter_match(&f, &r), "the peer's ID does not match");
	f = (struct flow_filter){.identity = "spiffe://mesh.test/ns"};
	cr_expect_not(flow_filter_match(&f, &r), "a prefix of an ID matched");
	f = (struct flow_filter){.trust_domain = "other.test"};
	cr_expect(flow_filter_match(&f, &r));
	f = (struct flow_filter){.trust_domain = "other.tes"};
	cr_expect_not(flow_filter_match(&f, &r), "a prefix of a trust domain matched");
	f = (struct flow_filter){.since_ms = T0_MS + 1};
	cr_expect_not(flow_filter_match(&f, &r));
	f = (struct flow_filter){.since_ms = T0_MS};
	cr_expect(flow_filter_match(&f, &r));
	flow_record_release(&r);
}

/* --- alerts ------------------------------------------------------------------ */

static struct flow_record drop_at(__s64 ms, __u16 reason, __u8 dir)
{
	struct fg_event e = event(FG_EV_DROP, reason);
	struct flow_record r;

	e.dir = dir;
	cr_assert_eq(flow_from_event(&e, ms * 1000000LL - (long long)e.ts_ns, &r), 0);
	return r;
}

struct seen {
	int n;
	struct alert last;
};

static void collect(void *ctx, const struct alert *al)
{
	struct seen *s = ctx;

	s->n++;
	s->last = *al;
}

Test(alerts, a_burst_of_denies_raises_one_alert_per_window)
{
	struct alerts_config cfg = {.deny_threshold = 5, .window_s = 10};
	struct seen s = {};
	struct alerts *a;
	int raised = 0;

	cr_assert_eq(alerts_new(&cfg, &a), 0);
	for (int i = 0; i < 20; i++) {
		struct flow_record r = drop_at(T0_MS + i, FG_REASON_DENY_POLICY, FG_DIR_EGRESS);

		raised += alerts_feed(a, &r);
	}
	cr_expect_eq(raised, 1, "%d alerts for one burst in one window", raised);
	alerts_each(a, 0, collect, &s);
	cr_assert_eq(s.n, 1);
	cr_expect_eq(s.last.kind, ALERT_DENY_RATE);
	cr_expect_eq(s.last.identity, 256, "egress drops count against the local side");
	cr_expect_eq(s.last.count, 5);
	cr_expect_eq(s.last.time_ms, T0_MS + 4);

	/* the next window: another alert */
	for (int i = 0; i < 5; i++) {
		struct flow_record r =
			drop_at(T0_MS + 10000 + i, FG_REASON_DENY_POLICY, FG_DIR_EGRESS);

		raised += alerts_feed(a, &r);
	}
	cr_expect_eq(raised, 2);
	cr_expect_eq(alerts_last_seq(a), 2);
	alerts_free(a);
}

Test(alerts, denies_below_the_threshold_raise_nothing)
{
	struct alerts_config cfg = {.deny_threshold = 5, .window_s = 10};
	struct alerts *a;
	int raised = 0;

	cr_assert_eq(alerts_new(&cfg, &a), 0);
	/* four per window, windows apart: never five in one */
	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < 4; i++) {
			struct flow_record r = drop_at(T0_MS + w * 10000 + i, FG_REASON_DENY_POLICY,
						       FG_DIR_EGRESS);

			raised += alerts_feed(a, &r);
		}
	}
	cr_expect_eq(raised, 0);
	alerts_free(a);
}

Test(alerts, thresholds_change_at_run_time)
{
	struct alerts_config cfg = {.deny_threshold = 100, .window_s = 10, .keep = 7};
	struct alerts *a;
	int raised = 0;

	cr_assert_eq(alerts_new(&cfg, &a), 0);
	for (int i = 0; i < 3; i++) {
		struct flow_record r = drop_at(T0_MS + i, FG_REASON_DENY_POLICY, FG_DIR_EGRESS);

		raised += alerts_feed(a, &r);
	}
	cr_expect_eq(raised, 0);
	/* SIGHUP lowers the threshold: the open window's count goes on from 3 */
	cfg = (struct alerts_config){.deny_threshold = 4, .window_s = 10};
	cr_assert_eq(alerts_set_config(a, &cfg), 0);
	for (int i = 3; i < 6; i++) {
		struct flow_record r = drop_at(T0_MS + i, FG_REASON_DENY_POLICY, FG_DIR_EGRESS);

		raised += alerts_feed(a, &r);
	}
	cr_expect_eq(raised, 1, "the lowered threshold raised %d alerts", raised);
	cfg.window_s = 0;
	cr_expect_eq(alerts_set_config(a, &cfg), -EINVAL);
	alerts_free(a);
}

Test(alerts, spoofing_and_quarantine_hits_alert_at_once)
{
	struct alerts_config cfg = {.deny_threshold = 0, .window_s = 10};
	struct flow_record r;
	struct seen s = {};
	struct alerts *a;

	cr_assert_eq(alerts_new(&cfg, &a), 0);
	r = drop_at(T0_MS, FG_REASON_DENY_SPOOF, FG_DIR_EGRESS);
	cr_expect_eq(alerts_feed(a, &r), 1);
	cr_expect_eq(alerts_feed(a, &r), 0, "a second spoofing alert within the window");
	r = drop_at(T0_MS, FG_REASON_DENY_QUARANTINE_PEER, FG_DIR_EGRESS);
	r.kind = FLOW_QUARANTINE_HIT;
	cr_expect_eq(alerts_feed(a, &r), 1);
	alerts_each(a, 1, collect, &s);
	cr_assert_eq(s.n, 1);
	cr_expect_eq(s.last.kind, ALERT_QUARANTINE_HIT);
	cr_expect_eq(s.last.identity, 257, "a quarantined peer's hit is about the peer");
	alerts_free(a);
}

Test(alerts, repeated_auth_failures_with_one_peer)
{
	struct alerts_config cfg = {.auth_failures = 3, .window_s = 60};
	struct flow_record r = {.kind = FLOW_AUTH_FAILED,
				.verdict = FLOW_V_DENY,
				.local_id = 256,
				.peer_id = 300,
				.time_ms = T0_MS};
	struct seen s = {};
	struct alerts *a;
	int raised = 0;

	cr_assert_eq(alerts_new(&cfg, &a), 0);
	for (int i = 0; i < 3; i++)
		raised += alerts_feed(a, &r);
	cr_expect_eq(raised, 1);
	alerts_each(a, 0, collect, &s);
	cr_expect_eq(s.last.kind, ALERT_AUTH_FAILURES);
	cr_expect_eq(s.last.identity, 300);
	alerts_free(a);
}

Test(alerts, the_ring_keeps_the_newest)
{
	struct alerts_config cfg = {.window_s = 1, .keep = 4};
	struct seen s = {};
	struct alerts *a;

	cr_assert_eq(alerts_new(&cfg, &a), 0);
	for (int i = 0; i < 10; i++) {
		struct flow_record r =
			drop_at(T0_MS + i * 1000, FG_REASON_DENY_SPOOF, FG_DIR_EGRESS);

		cr_expect_eq(alerts_feed(a, &r), 1);
	}
	alerts_each(a, 0, collect, &s);
	cr_expect_eq(s.n, 4);
	cr_expect_eq(s.last.seq, 10);
	alerts_free(a);
}

Test(alerts, json)
{
	struct alerts_config cfg = {.deny_threshold = 1, .window_s = 10};
	struct flow_record r = drop_at(T0_MS, FG_REASON_DENY_POLICY, FG_DIR_INGRESS);
	struct seen s = {};
	struct json_object *o;
	struct alerts *a;

	r.peer_name = flow_name_new(A_ID);
	cr_assert_eq(alerts_new(&cfg, &a), 0);
	cr_assert_eq(alerts_feed(a, &r), 1);
	flow_record_release(&r);
	alerts_each(a, 0, collect, &s);
	o = alert_to_json(&s.last, "node1");
	cr_expect_str_eq(jstr(o, "type", NULL), "alert");
	cr_expect_str_eq(jstr(o, "kind", NULL), "deny_rate");
	cr_expect_str_eq(jstr(o, "subject", "spiffe_id"), A_ID,
			 "ingress drops count against the peer");
	cr_expect_str_eq(jstr(o, "flow", "reason"), "deny_policy");
	cr_expect(strstr(jstr(o, "message", NULL), A_ID) != NULL);
	json_object_put(o);
	alerts_free(a);
}

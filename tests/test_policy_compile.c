// SPDX-License-Identifier: Apache-2.0
/*
 * Tests of agent/policy_compile.c against a fixed view of identities: which
 * fg_policy entries each kind of rule produces on this node (directions,
 * local/remote split, prefixes, trust domains, any, labels, ports and
 * protocols), how entries with the same key merge, the entry cap, the diff,
 * the printer, and policy_check(), which must name the same rule, action
 * and auth as the datapath's lookup over the compiled entries.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_compile.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum {
	WEB1 = 256,
	WEB2 = 257,
	API = 258,
	DB = 259,
	PARTNER = 260,
	WEBROOT = 261,
	TCP = IPPROTO_TCP,
	UDP = IPPROTO_UDP,
	EG = FG_DIR_EGRESS,
	IN = FG_DIR_INGRESS,
};

static const struct policy_label web1_labels[] = {{"tier", "web"}, {"env", "prod"}};
static const struct policy_label web2_labels[] = {
	{"tier", "web"}, {"env", "staging"}, {"canary", "yes"}};
static const struct policy_label api_labels[] = {{"tier", "api"}, {"env", "prod"}};
static const struct policy_label db_labels[] = {{"tier", "db"}};
static const struct policy_label partner_labels[] = {{"app", "pay"}, {"env", "prod"}};

/* Four workloads on this node, two remote endpoints. */
static const struct policy_identity view[] = {
	{"spiffe://a.example/ns/web/w1", WEB1, true, web1_labels, ARRAY_SIZE(web1_labels)},
	{"spiffe://a.example/ns/web/w2", WEB2, true, web2_labels, ARRAY_SIZE(web2_labels)},
	{"spiffe://a.example/ns/api", API, true, api_labels, ARRAY_SIZE(api_labels)},
	{"spiffe://a.example/ns/db", DB, false, db_labels, ARRAY_SIZE(db_labels)},
	{"spiffe://b.example/pay", PARTNER, false, partner_labels, ARRAY_SIZE(partner_labels)},
	{"spiffe://a.example/ns/web", WEBROOT, true, NULL, 0},
};

static struct policy_doc *parse(const char *text)
{
	struct policy_doc *doc = NULL;
	struct policy_error err = {};

	cr_assert_eq(policy_parse_buffer("t.yaml", text, strlen(text), &doc, &err), 0, "%s",
		     err.msg);
	return doc;
}

static struct policy_entries *compile_max(const char *text, size_t max)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(text);
	struct policy_compile_opts opts = {.max_entries = max};
	struct policy_entries *set = NULL;
	struct policy_error err = {};

	cr_assert_eq(policy_compile(doc, view, ARRAY_SIZE(view), &opts, &set, &err), 0, "%s",
		     err.msg);
	return set;
}

static struct policy_entries *compile(const char *text)
{
	return compile_max(text, 0);
}

static const struct policy_entry *find(const struct policy_entries *set, __u8 dir, __u32 src,
				       __u32 dst, __u16 port, __u8 proto)
{
	struct fg_policy_key k = {
		.src_id = src, .dst_id = dst, .port = port, .proto = proto, .dir = dir};

	return policy_entries_find(set, &k);
}

/* The entry exists with this value. */
static void expect_entry(const struct policy_entries *set, __u8 dir, __u32 src, __u32 dst,
			 __u16 port, __u8 proto, __u8 action, __u8 auth, __u32 rule_id)
{
	const struct policy_entry *e = find(set, dir, src, dst, port, proto);

	cr_assert_not_null(e, "no entry dir=%u %u -> %u port %u proto %u", dir, src, dst, port,
			   proto);
	cr_expect_eq(e->value.action, action, "dir=%u %u -> %u port %u: action %u, expected %u",
		     dir, src, dst, port, e->value.action, action);
	cr_expect_eq(e->value.auth, auth, "dir=%u %u -> %u port %u: auth %u, expected %u", dir, src,
		     dst, port, e->value.auth, auth);
	cr_expect_eq(e->value.rule_id, rule_id, "dir=%u %u -> %u port %u: rule %u, expected %u",
		     dir, src, dst, port, e->value.rule_id, rule_id);
}

/* The identities a rule's egress entries from src reach (any port and protocol). */
static bool egress_reaches(const struct policy_entries *set, __u32 src, __u32 dst)
{
	for (size_t i = 0; i < set->n; i++) {
		const struct fg_policy_key *k = &set->entries[i].key;

		if (k->dir == EG && k->src_id == src && k->dst_id == dst)
			return true;
	}
	return false;
}

#define ALLOW_HEAD "version: 1\nrules:\n- name: r\n  action: allow\n"

/* ---------------------------------------------------------- directions */

Test(policy_compile, local_pair_gives_egress_and_ingress)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/api}\n"
				   "  ports: [443]\n  protocols: [tcp]\n");

	cr_assert_eq(set->n, 2);
	expect_entry(set, EG, WEB1, API, 443, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, IN, WEB1, API, 443, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
}

Test(policy_compile, local_remote_split)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\nrules:\n"
		"- {name: out, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [5432], protocols: [tcp]}\n"
		"- {name: in, action: allow, from: {spiffe_id: spiffe://a.example/ns/db},"
		"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [9000], protocols: [tcp]}\n"
		"- {name: elsewhere, action: allow, from: {spiffe_id: spiffe://a.example/ns/db},"
		"   to: {trust_domain: b.example}}\n");

	/* local -> remote: egress only; remote -> local: ingress only; remote -> remote: none. */
	cr_assert_eq(set->n, 2);
	expect_entry(set, EG, WEB1, DB, 5432, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, IN, DB, API, 9000, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 2);
}

Test(policy_compile, rule_ids_are_document_positions_and_auth_is_mtls)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\nrules:\n"
		"- {name: a, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [1], protocols: [tcp]}\n"
		"- {name: b, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [2], protocols: [tcp],"
		"   auth: required}\n");

	expect_entry(set, EG, WEB1, DB, 1, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, EG, WEB1, DB, 2, TCP, FG_ACT_ALLOW, FG_AUTH_MTLS, 2);
}

/* ----------------------------------------------------------- selectors */

Test(policy_compile, prefix_selects_strictly_below)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {spiffe_id: 'spiffe://a.example/ns/web/*'}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/db}\n");

	cr_expect(egress_reaches(set, WEB1, DB));
	cr_expect(egress_reaches(set, WEB2, DB));
	cr_expect_not(egress_reaches(set, WEBROOT, DB), "the prefix itself is not below it");
	cr_expect_not(egress_reaches(set, API, DB));
	cr_expect_eq(set->n, 4, "2 sources x tcp and udp, port 0: %zu", set->n);
	expect_entry(set, EG, WEB2, DB, 0, UDP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
}

Test(policy_compile, exact_id_selects_only_itself)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web}\n"
			   "  to: {spiffe_id: spiffe://a.example/ns/db}\n  protocols: [tcp]\n");

	cr_assert_eq(set->n, 1);
	expect_entry(set, EG, WEBROOT, DB, 0, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
}

Test(policy_compile, trust_domain_selects_its_members)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {trust_domain: a.example}\n  protocols: [tcp]\n");
	static const __u32 members[] = {WEB1, WEB2, API, DB, WEBROOT};

	for (size_t i = 0; i < ARRAY_SIZE(members); i++)
		expect_entry(set, EG, WEB1, members[i], 0, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	cr_expect_not(egress_reaches(set, WEB1, PARTNER));
	/* Ingress at the local members other than... every local member, from web1. */
	expect_entry(set, IN, WEB1, WEB1, 0, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, IN, WEB1, API, 0, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	cr_expect_eq(set->n, 5 + 4, "5 egress, 4 ingress (db is remote): %zu", set->n);
}

Test(policy_compile, foreign_trust_domain_to_local)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {trust_domain: b.example}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/api}\n"
				   "  ports: [8443]\n  protocols: [tcp]\n  auth: required\n");

	cr_assert_eq(set->n, 1);
	expect_entry(set, IN, PARTNER, API, 8443, TCP, FG_ACT_ALLOW, FG_AUTH_MTLS, 1);
}

Test(policy_compile, any_is_a_wildcard_on_the_peer_side_only)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: any\n  to: any\n  ports: [53]\n  protocols: [udp]\n");
	static const __u32 locals[] = {WEB1, WEB2, API, WEBROOT};

	for (size_t i = 0; i < ARRAY_SIZE(locals); i++) {
		expect_entry(set, EG, locals[i], FG_ID_ANY, 53, UDP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
		expect_entry(set, IN, FG_ID_ANY, locals[i], 53, UDP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	}
	cr_assert_eq(set->n, 8);
	for (size_t i = 0; i < set->n; i++) {
		const struct fg_policy_key *k = &set->entries[i].key;
		__u32 local = k->dir == EG ? k->src_id : k->dst_id;

		cr_expect_neq(local, FG_ID_ANY, "the local side is always exact");
	}
}

Test(policy_compile, any_to_a_selector_enumerates_the_selected)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: any\n  to: {spiffe_id: spiffe://a.example/ns/api}\n"
				   "  ports: [80]\n  protocols: [tcp]\n");

	/* Egress from every local identity to api, ingress at api from any. */
	expect_entry(set, EG, WEB1, API, 80, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, EG, WEB2, API, 80, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, EG, API, API, 80, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, EG, WEBROOT, API, 80, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	expect_entry(set, IN, FG_ID_ANY, API, 80, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	cr_assert_eq(set->n, 5);
}

struct label_case {
	const char *selector;
	__u32 selected[6]; /* 0-terminated */
};

static const struct label_case label_cases[] = {
	{"{labels: {tier: web}}", {WEB1, WEB2}},
	{"{labels: {env: [prod, staging]}}", {WEB1, WEB2, API, PARTNER}},
	{"{labels: {env: [staging, test]}}", {WEB2}},
	{"{labels: {canary: {exists: true}}}", {WEB2}},
	{"{labels: {canary: {exists: false}}}", {WEB1, API, DB, PARTNER, WEBROOT}},
	{"{labels: {tier: web, canary: {exists: false}}}", {WEB1}},
	{"{labels: {env: prod}, trust_domain: b.example}", {PARTNER}},
	{"{labels: {tier: cache}}", {0}},
	{"{labels: {tier: [Web]}}", {0}},
};

static bool in_list(const __u32 *list, __u32 id)
{
	for (; *list; list++)
		if (*list == id)
			return true;
	return false;
}

Test(policy_compile, labels_equals_in_exists_absent)
{
	char text[512];

	for (size_t c = 0; c < ARRAY_SIZE(label_cases); c++) {
		const struct label_case *lc = &label_cases[c];
		struct policy_entries *set;

		/* Selected as destinations of web1 (a local source): egress shows them all. */
		snprintf(text, sizeof(text),
			 ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				    "  to: %s\n  protocols: [tcp]\n",
			 lc->selector);
		set = compile(text);
		for (size_t i = 0; i < ARRAY_SIZE(view); i++)
			cr_expect_eq(egress_reaches(set, WEB1, view[i].id),
				     in_list(lc->selected, view[i].id), "%s: %s %s", lc->selector,
				     view[i].spiffe_id,
				     in_list(lc->selected, view[i].id) ? "not selected"
								       : "selected");
		policy_entries_free(set);
	}
}

/* --------------------------------------------------- ports and protocols */

Test(policy_compile, ports_and_ranges_expand)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/db}\n"
				   "  ports: [80, 8000-8002, 8001, 79-80]\n  protocols: [tcp]\n");
	static const __u16 ports[] = {79, 80, 8000, 8001, 8002};

	for (size_t i = 0; i < ARRAY_SIZE(ports); i++)
		expect_entry(set, EG, WEB1, DB, ports[i], TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	cr_assert_eq(set->n, ARRAY_SIZE(ports), "overlaps merge: %zu entries", set->n);
	cr_expect_null(find(set, EG, WEB1, DB, 0, TCP));
}

Test(policy_compile, all_ports_collapse_to_port_zero)
{
	static const char *const all[] = {
		"",
		"  ports: [1-65535]\n",
		"  ports: [1-1000, 1001-65535]\n",
		"  ports: [30000-65535, 1-40000, 22]\n",
		"  ports: [2-65535, 1]\n",
	};
	char text[512];

	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		struct policy_entries *set;

		snprintf(text, sizeof(text),
			 ALLOW_HEAD
			 "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
			 "  to: {spiffe_id: spiffe://a.example/ns/db}\n  protocols: [udp]\n%s",
			 all[i]);
		set = compile(text);
		cr_expect_eq(set->n, 1, "'%s': %zu entries", all[i], set->n);
		cr_expect_not_null(find(set, EG, WEB1, DB, 0, UDP), "'%s': no port 0 entry",
				   all[i]);
		policy_entries_free(set);
	}
}

Test(policy_compile, almost_all_ports_is_one_entry_per_port)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/db}\n"
				   "  ports: [2-65535]\n  protocols: [tcp]\n");

	cr_assert_eq(set->n, 65534);
	cr_expect_null(find(set, EG, WEB1, DB, 0, TCP));
	cr_expect_null(find(set, EG, WEB1, DB, 1, TCP));
	cr_expect_not_null(find(set, EG, WEB1, DB, 2, TCP));
	cr_expect_not_null(find(set, EG, WEB1, DB, 65535, TCP));
}

Test(policy_compile, protocols)
{
	_cleanup_policy_entries_ struct policy_entries *both =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/db}\n  ports: [53]\n");
	_cleanup_policy_entries_ struct policy_entries *udp =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/db}\n  ports: [53]\n"
				   "  protocols: [udp]\n");

	cr_assert_eq(both->n, 2);
	cr_expect_not_null(find(both, EG, WEB1, DB, 53, TCP));
	cr_expect_not_null(find(both, EG, WEB1, DB, 53, UDP));
	cr_assert_eq(udp->n, 1);
	cr_expect_not_null(find(udp, EG, WEB1, DB, 53, UDP));
}

/* ------------------------------------------------------------- merging */

Test(policy_compile, deny_overrides_allow_on_the_same_key)
{
	_cleanup_policy_entries_ struct policy_entries *allow_first = compile(
		"version: 1\nrules:\n"
		"- {name: a, action: allow, from: {trust_domain: a.example}, to: {trust_domain: a.example},"
		"   ports: [443], protocols: [tcp], auth: required}\n"
		"- {name: d, action: deny, from: {spiffe_id: spiffe://a.example/ns/web/w2},"
		"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [443], protocols: [tcp]}\n");
	_cleanup_policy_entries_ struct policy_entries *deny_first = compile(
		"version: 1\nrules:\n"
		"- {name: d, action: deny, from: {spiffe_id: spiffe://a.example/ns/web/w2},"
		"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [443], protocols: [tcp]}\n"
		"- {name: a, action: allow, from: {trust_domain: a.example}, to: {trust_domain: a.example},"
		"   ports: [443], protocols: [tcp], auth: required}\n");

	expect_entry(allow_first, EG, WEB2, API, 443, TCP, FG_ACT_DENY, FG_AUTH_NONE, 2);
	expect_entry(allow_first, IN, WEB2, API, 443, TCP, FG_ACT_DENY, FG_AUTH_NONE, 2);
	expect_entry(allow_first, EG, WEB1, API, 443, TCP, FG_ACT_ALLOW, FG_AUTH_MTLS, 1);
	expect_entry(deny_first, EG, WEB2, API, 443, TCP, FG_ACT_DENY, FG_AUTH_NONE, 1);
	expect_entry(deny_first, IN, WEB2, API, 443, TCP, FG_ACT_DENY, FG_AUTH_NONE, 1);
	expect_entry(deny_first, EG, WEB1, API, 443, TCP, FG_ACT_ALLOW, FG_AUTH_MTLS, 2);
	cr_expect_eq(allow_first->n, deny_first->n);
}

Test(policy_compile, allows_merge_first_rule_strictest_auth)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\nrules:\n"
		"- {name: plain, action: allow, from: {labels: {tier: web}},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [5432], protocols: [tcp]}\n"
		"- {name: strict, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {labels: {tier: db}}, ports: [5432], protocols: [tcp], auth: required}\n"
		"- {name: later-plain, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w2},"
		"   to: {labels: {tier: db}}, ports: [5432, 5433], protocols: [tcp]}\n"
		"- {name: d1, action: deny, from: {spiffe_id: spiffe://a.example/ns/web/w2},"
		"   to: {labels: {tier: db}}, ports: [5433], protocols: [tcp]}\n"
		"- {name: d2, action: deny, from: {labels: {tier: web}},"
		"   to: {labels: {tier: db}}, ports: [5433], protocols: [tcp]}\n");

	expect_entry(set, EG, WEB1, DB, 5432, TCP, FG_ACT_ALLOW, FG_AUTH_MTLS, 1);
	expect_entry(set, EG, WEB2, DB, 5432, TCP, FG_ACT_ALLOW, FG_AUTH_NONE, 1);
	/* Two denies: the first keeps the entry. */
	expect_entry(set, EG, WEB2, DB, 5433, TCP, FG_ACT_DENY, FG_AUTH_NONE, 4);
	expect_entry(set, EG, WEB1, DB, 5433, TCP, FG_ACT_DENY, FG_AUTH_NONE, 5);
	cr_expect_eq(set->n, 4);
}

Test(policy_compile, entries_are_sorted_and_never_meta)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile("version: 1\nrules:\n"
			"- {name: a, action: allow, from: any, to: {trust_domain: a.example},"
			"   ports: [443, 80, 8080]}\n"
			"- {name: b, action: deny, from: {trust_domain: b.example}, to: any}\n");

	cr_assert_gt(set->n, 1);
	for (size_t i = 0; i < set->n; i++) {
		const struct fg_policy_key *k = &set->entries[i].key;

		cr_expect(k->dir == EG || k->dir == IN);
		cr_expect(k->src_id && k->dst_id);
		if (i) {
			const struct fg_policy_key *p = &set->entries[i - 1].key;
			__u64 a = (__u64)p->dir << 56 | (__u64)p->src_id << 24 | p->dst_id;
			__u64 b = (__u64)k->dir << 56 | (__u64)k->src_id << 24 | k->dst_id;

			cr_expect(a < b || (a == b && (p->port < k->port || (p->port == k->port &&
									     p->proto < k->proto))),
				  "entries %zu and %zu out of order", i - 1, i);
		}
	}
}

/* ------------------------------------------------------------- the cap */

static int compile_err(const char *text, size_t max, struct policy_error *err)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(text);
	struct policy_compile_opts opts = {.max_entries = max};
	struct policy_entries *set = (struct policy_entries *)&set;
	int r;

	r = policy_compile(doc, view, ARRAY_SIZE(view), &opts, &set, err);
	if (!r)
		policy_entries_free(set);
	else
		cr_expect_eq(set, (struct policy_entries *)&set, "output written on failure");
	return r;
}

Test(policy_compile, entry_cap)
{
	const char *ten = ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				     "  to: {spiffe_id: spiffe://a.example/ns/db}\n"
				     "  ports: [1-10]\n  protocols: [tcp]\n";
	const char *eleven =
		"version: 1\nrules:\n"
		"- {name: first, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [1-10], protocols: [tcp]}\n"
		"- {name: wide, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [5-11], protocols: [tcp]}\n";
	struct policy_error err = {};

	cr_assert_eq(compile_err(ten, 10, &err), 0, "%s", err.msg);
	cr_assert_eq(compile_err(eleven, 10, &err), -E2BIG);
	cr_expect(strstr(err.msg, "rule 'wide' (line 4)") && strstr(err.msg, "more than 10"), "%s",
		  err.msg);
	cr_expect(strstr(err.msg, "this rule alone makes 7"), "%s", err.msg);
}

Test(policy_compile, default_cap_is_one_million)
{
	/* 4 local sources x 5 destinations x 65534 ports x 2 protocols, plus ingress. */
	const char *huge = ALLOW_HEAD "  from: any\n  to: {trust_domain: a.example}\n"
				      "  ports: [2-65535]\n";
	struct policy_error err = {};

	cr_assert_eq(compile_err(huge, 0, &err), -E2BIG);
	cr_expect(strstr(err.msg, "more than 1000000 kernel entries"), "%s", err.msg);
}

/* ---------------------------------------------------- the identity view */

Test(policy_compile, bad_identity_views)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(ALLOW_HEAD "  from: any\n  to: any\n");
	const struct policy_identity zero[] = {{"spiffe://a.example/x", 0, true, NULL, 0}};
	const struct policy_identity reserved[] = {
		{"spiffe://a.example/x", FG_ID_WORLD, true, NULL, 0}};
	const struct policy_identity any[] = {{"spiffe://a.example/x", FG_ID_ANY, true, NULL, 0}};
	const struct policy_identity bad_id[] = {{"spiffe://A.example/x", 300, true, NULL, 0}};
	const struct policy_identity same_num[] = {{"spiffe://a.example/x", 300, true, NULL, 0},
						   {"spiffe://a.example/y", 300, false, NULL, 0}};
	const struct policy_identity same_id[] = {{"spiffe://a.example/x", 300, true, NULL, 0},
						  {"spiffe://a.example/x", 301, false, NULL, 0}};
	const struct policy_label nokey[] = {{NULL, "v"}};
	const struct policy_identity bad_label[] = {{"spiffe://a.example/x", 300, true, nokey, 1}};
	const struct {
		const struct policy_identity *ids;
		size_t n;
		const char *mentions;
	} cases[] = {
		{zero, 1, "numeric id 0 outside 256-16777215"},
		{reserved, 1, "numeric id 2 outside"},
		{any, 1, "numeric id 2147483647 outside"},
		{bad_id, 1, "invalid SPIFFE ID 'spiffe://A.example/x'"},
		{same_num, 2, "share numeric id 300"},
		{same_id, 2, "'spiffe://a.example/x' is listed twice"},
		{bad_label, 1, "label 0 has no key or value"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct policy_entries *set = NULL;
		struct policy_error err = {};

		cr_expect_eq(policy_compile(doc, cases[i].ids, cases[i].n, NULL, &set, &err),
			     -EINVAL, "case %zu", i);
		cr_expect_null(set);
		cr_expect(strstr(err.msg, cases[i].mentions), "case %zu: %s", i, err.msg);
	}
}

Test(policy_compile, empty_view_gives_no_entries)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(ALLOW_HEAD "  from: any\n  to: any\n");
	_cleanup_policy_entries_ struct policy_entries *set = NULL;
	struct policy_error err = {};

	cr_assert_eq(policy_compile(doc, NULL, 0, NULL, &set, &err), 0, "%s", err.msg);
	cr_assert_eq(set->n, 0);
}

/* ---------------------------------------------------------------- diff */

Test(policy_compile, diff_added_removed_changed)
{
	_cleanup_policy_entries_ struct policy_entries *old = compile(
		"version: 1\nrules:\n"
		"- {name: a, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [80, 443], protocols: [tcp]}\n");
	_cleanup_policy_entries_ struct policy_entries *new = compile(
		"version: 2\nrules:\n"
		"- {name: a, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		"   to: {spiffe_id: spiffe://a.example/ns/db}, ports: [443, 8443], protocols: [tcp],"
		"   auth: required}\n");
	_cleanup_policy_diff_ struct policy_diff *d = NULL;

	cr_assert_eq(policy_diff(old, new, &d), 0);
	/* 80 removed; 8443 added; 443 changed (auth): removed and added. */
	cr_assert_eq(d->removed.n, 2);
	cr_assert_eq(d->added.n, 2);
	cr_expect_eq(d->removed.entries[0].key.port, 80);
	cr_expect_eq(d->removed.entries[1].key.port, 443);
	cr_expect_eq(d->removed.entries[1].value.auth, FG_AUTH_NONE);
	cr_expect_eq(d->added.entries[0].key.port, 443);
	cr_expect_eq(d->added.entries[0].value.auth, FG_AUTH_MTLS);
	cr_expect_eq(d->added.entries[1].key.port, 8443);
}

Test(policy_compile, diff_of_equal_sets_is_empty_and_ignores_meta)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		ALLOW_HEAD "  from: any\n  to: {trust_domain: a.example}\n  ports: [1-20]\n");
	_cleanup_policy_diff_ struct policy_diff *same = NULL;
	_cleanup_policy_diff_ struct policy_diff *dumped = NULL;
	struct policy_entries dump = {.n = set->n + 1};

	cr_assert_eq(policy_diff(set, set, &same), 0);
	cr_expect_eq(same->added.n, 0);
	cr_expect_eq(same->removed.n, 0);

	/* A map dump: unsorted, with the generation entry. */
	dump.entries = calloc(dump.n, sizeof(*dump.entries));
	cr_assert_not_null(dump.entries);
	for (size_t i = 0; i < set->n; i++)
		dump.entries[set->n - 1 - i] = set->entries[i];
	dump.entries[set->n].value = (struct fg_policy_value){.action = FG_ACT_META, .rule_id = 9};
	cr_assert_eq(policy_diff(&dump, set, &dumped), 0);
	cr_expect_eq(dumped->added.n, 0);
	cr_expect_eq(dumped->removed.n, 0);
	free(dump.entries);
}

/* ------------------------------------------------------------- printer */

Test(policy_compile, entry_format)
{
	struct policy_entry e = {
		.key = {.src_id = WEB1, .dst_id = FG_ID_ANY, .port = 443, .proto = TCP, .dir = EG},
		.value = {.action = FG_ACT_ALLOW, .auth = FG_AUTH_MTLS, .rule_id = 3},
	};
	struct policy_entry unknown = {
		.key = {.src_id = 999, .dst_id = DB, .port = 0, .proto = UDP, .dir = IN},
		.value = {.action = FG_ACT_DENY, .rule_id = 12},
	};
	struct policy_entry meta = {.value = {.action = FG_ACT_META, .rule_id = 4}};
	char buf[POLICY_ENTRY_TEXT_MAX];

	policy_entry_format(&e, view, ARRAY_SIZE(view), buf, sizeof(buf));
	cr_expect_str_eq(
		buf,
		"egress spiffe://a.example/ns/web/w1 -> any port 443/tcp allow auth=mtls rule=3");
	policy_entry_format(&unknown, view, ARRAY_SIZE(view), buf, sizeof(buf));
	cr_expect_str_eq(
		buf,
		"ingress id:999 -> spiffe://a.example/ns/db port any/udp deny auth=none rule=12");
	policy_entry_format(&meta, view, ARRAY_SIZE(view), buf, sizeof(buf));
	cr_expect_str_eq(buf, "meta generation=4");
}

Test(policy_compile, print_entries_and_diff)
{
	_cleanup_policy_entries_ struct policy_entries *set =
		compile(ALLOW_HEAD "  from: {spiffe_id: spiffe://a.example/ns/web/w1}\n"
				   "  to: {spiffe_id: spiffe://a.example/ns/api}\n"
				   "  ports: [443]\n  protocols: [tcp]\n");
	_cleanup_policy_entries_ struct policy_entries *none = compile(
		ALLOW_HEAD
		"  from: {spiffe_id: spiffe://a.example/ns/db}\n  to: {trust_domain: b.example}\n");
	_cleanup_policy_diff_ struct policy_diff *d = NULL;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	f = open_memstream(&out, &len);
	cr_assert_not_null(f);
	cr_assert_eq(policy_entries_print(f, set, view, ARRAY_SIZE(view)), 0);
	cr_assert_eq(policy_diff(set, none, &d), 0);
	cr_assert_eq(policy_diff_print(f, d, view, ARRAY_SIZE(view)), 0);
	fclose(f);
	cr_expect_str_eq(
		out,
		"egress spiffe://a.example/ns/web/w1 -> spiffe://a.example/ns/api port 443/tcp allow auth=none rule=1\n"
		"ingress spiffe://a.example/ns/web/w1 -> spiffe://a.example/ns/api port 443/tcp allow auth=none rule=1\n"
		"- egress spiffe://a.example/ns/web/w1 -> spiffe://a.example/ns/api port 443/tcp allow auth=none rule=1\n"
		"- ingress spiffe://a.example/ns/web/w1 -> spiffe://a.example/ns/api port 443/tcp allow auth=none rule=1\n");
	free(out);
}

/* --------------------------------------------------------------- check */

static const char check_doc[] =
	"version: 1\n"
	"rules:\n"
	"- {name: web-to-api, action: allow, from: {labels: {tier: web}},\n"
	"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [443], protocols: [tcp]}\n"
	"- {name: w1-mtls, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},\n"
	"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [443], auth: required}\n"
	"- {name: no-w2-out, action: deny, from: {spiffe_id: spiffe://a.example/ns/web/w2},\n"
	"   to: any, ports: [443]}\n";

static void check(const struct policy_doc *doc, const char *from, const char *to, __u16 port,
		  __u8 proto, struct policy_verdict *v)
{
	int r = policy_check(doc, view, ARRAY_SIZE(view), from, to, port, proto, v);

	cr_assert_eq(r, 0, "policy_check(%s, %s, %u, %u): %d", from, to, port, proto, r);
}

Test(policy_compile, check_names_the_deciding_rule)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(check_doc);
	struct policy_verdict v;

	check(doc, "spiffe://a.example/ns/web/w1", "spiffe://a.example/ns/api", 443, TCP, &v);
	cr_expect_eq(v.action, FG_ACT_ALLOW);
	cr_expect_eq(v.auth, FG_AUTH_MTLS);
	cr_expect_eq(v.rule_index, 1);
	cr_expect_str_eq(v.rule_name, "web-to-api");
	cr_expect_eq(v.dir, EG);
	cr_expect_str_eq(v.reason, "allowed by rule 'web-to-api', mTLS required by rule 'w1-mtls'");

	check(doc, "spiffe://a.example/ns/web/w2", "spiffe://a.example/ns/api", 443, TCP, &v);
	cr_expect_eq(v.action, FG_ACT_DENY);
	cr_expect_eq(v.auth, FG_AUTH_NONE);
	cr_expect_eq(v.rule_index, 3);
	cr_expect_eq(v.overridden_index, 1);
	cr_expect_str_eq(v.reason,
			 "denied by rule 'no-w2-out' (deny overrides allow 'web-to-api')");

	check(doc, "spiffe://a.example/ns/web/w2", "spiffe://a.example/ns/db", 443, TCP, &v);
	cr_expect_eq(v.action, FG_ACT_DENY);
	cr_expect_eq(v.overridden_index, 0);
	cr_expect_str_eq(v.reason, "denied by rule 'no-w2-out'");

	check(doc, "spiffe://a.example/ns/web/w1", "spiffe://a.example/ns/api", 443, UDP, &v);
	cr_expect_eq(v.action, FG_ACT_ALLOW);
	cr_expect_str_eq(v.reason, "allowed by rule 'w1-mtls', mTLS required");
}

Test(policy_compile, check_default_deny_and_direction)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(check_doc);
	struct policy_verdict v;

	check(doc, "spiffe://a.example/ns/web/w1", "spiffe://a.example/ns/api", 80, TCP, &v);
	cr_expect_eq(v.action, FG_ACT_DENY);
	cr_expect_eq(v.rule_index, 0);
	cr_expect_null(v.rule_name);
	cr_expect_str_eq(v.reason, "no rule allows spiffe://a.example/ns/web/w1 -> "
				   "spiffe://a.example/ns/api port 80/tcp: default deny");

	/* A remote initiator is judged where the target lives: at ingress. */
	check(doc, "spiffe://b.example/pay", "spiffe://a.example/ns/api", 443, TCP, &v);
	cr_expect_eq(v.dir, IN);
	cr_expect_eq(v.action, FG_ACT_DENY);

	/* Not in the view: judged without labels, so the label rule does not apply. */
	check(doc, "spiffe://a.example/ns/web/w9", "spiffe://a.example/ns/api", 443, TCP, &v);
	cr_expect_eq(v.action, FG_ACT_DENY);
	cr_expect_eq(v.rule_index, 0);
}

Test(policy_compile, check_rejects_bad_input)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(check_doc);
	struct policy_verdict v = {.rule_index = 77};
	const char *w1 = "spiffe://a.example/ns/web/w1", *api = "spiffe://a.example/ns/api";

	cr_expect_eq(policy_check(doc, view, ARRAY_SIZE(view), w1, api, 0, TCP, &v), -EINVAL);
	cr_expect_eq(policy_check(doc, view, ARRAY_SIZE(view), w1, api, 443, IPPROTO_ICMP, &v),
		     -EINVAL);
	cr_expect_eq(policy_check(doc, view, ARRAY_SIZE(view), "web", api, 443, TCP, &v), -EINVAL);
	cr_expect_eq(policy_check(doc, view, ARRAY_SIZE(view), w1, "spiffe://a.example/x/", 443,
				  TCP, &v),
		     -EINVAL);
	cr_expect_eq(v.rule_index, 77, "result written on failure");
}

/* The datapath's fg_policy_match() (bpf/lib/verdict.h) over a set of entries. */
struct dp_verdict {
	__u8 action;
	__u8 auth;
	__u32 rule_id;
};

static struct dp_verdict datapath(const struct policy_entries *set, __u8 dir, __u32 local,
				  __u32 peer, __u16 port, __u8 proto)
{
	struct dp_verdict v = {.action = FG_ACT_DENY};
	bool allowed = false;

	for (int i = 0; i < 4; i++) {
		__u32 p = (i & 1) ? FG_ID_ANY : peer;
		const struct policy_entry *e =
			find(set, dir, dir == EG ? local : p, dir == EG ? p : local,
			     (i & 2) ? 0 : port, proto);

		if (!e)
			continue;
		if (e->value.action == FG_ACT_DENY)
			return (struct dp_verdict){.action = FG_ACT_DENY,
						   .rule_id = e->value.rule_id};
		if (!allowed)
			v.rule_id = e->value.rule_id;
		if (e->value.auth > v.auth)
			v.auth = e->value.auth;
		allowed = true;
	}
	if (allowed)
		v.action = FG_ACT_ALLOW;
	return v;
}

/* Overlapping rules of every kind, so that precedence decides often. */
static const char agreement_doc[] =
	"version: 1\n"
	"rules:\n"
	"- {name: web-anywhere, action: allow, from: {labels: {tier: web}}, to: any,"
	"   ports: [1-65535]}\n"
	"- {name: web-api, action: allow, from: {spiffe_id: 'spiffe://a.example/ns/web/*'},"
	"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [443, 8443], auth: required}\n"
	"- {name: no-w2-db, action: deny, from: {spiffe_id: spiffe://a.example/ns/web/w2},"
	"   to: {trust_domain: a.example}, ports: [5432]}\n"
	"- {name: partner-in, action: allow, from: {trust_domain: b.example},"
	"   to: {labels: {env: prod}}, ports: [443], protocols: [tcp]}\n"
	"- {name: no-udp-dns-api, action: deny, from: any,"
	"   to: {spiffe_id: spiffe://a.example/ns/api}, ports: [53], protocols: [udp]}\n"
	"- {name: dns, action: allow, from: any, to: any, ports: [53]}\n"
	"- {name: api-db, action: allow, from: {spiffe_id: spiffe://a.example/ns/api},"
	"   to: {labels: {tier: db}}, ports: [5432], auth: required}\n"
	"- {name: partner-not-root, action: deny, from: {trust_domain: b.example},"
	"   to: {spiffe_id: spiffe://a.example/ns/web}}\n"
	"- {name: root-any, action: allow, from: any, to: {spiffe_id: spiffe://a.example/ns/web},"
	"   ports: [1-10000, 9000-65535], auth: required}\n";

static void check_pair(const struct policy_doc *doc, const struct policy_entries *set,
		       const struct policy_identity *from, const struct policy_identity *to,
		       __u16 port, __u8 proto)
{
	struct policy_verdict v;
	struct dp_verdict dp, other;

	check(doc, from->spiffe_id, to->spiffe_id, port, proto, &v);
	dp = v.dir == EG ? datapath(set, EG, from->id, to->id, port, proto)
			 : datapath(set, IN, to->id, from->id, port, proto);
	cr_expect(
		dp.action == v.action && dp.rule_id == v.rule_index && dp.auth == v.auth,
		"%s -> %s %u/%u dir %u: datapath %u rule %u auth %u, check %u rule %zu auth %u (%s)",
		from->spiffe_id, to->spiffe_id, port, proto, v.dir, dp.action, dp.rule_id, dp.auth,
		v.action, v.rule_index, v.auth, v.reason);
	if (!from->local || !to->local)
		return;
	/* Both ends on this node: ingress must reach the same decision. */
	other = datapath(set, IN, to->id, from->id, port, proto);
	cr_expect(other.action == dp.action && other.auth == dp.auth,
		  "%s -> %s %u/%u: egress %u auth %u, ingress %u auth %u", from->spiffe_id,
		  to->spiffe_id, port, proto, dp.action, dp.auth, other.action, other.auth);
}

Test(policy_compile, check_agrees_with_compiled_entries)
{
	static const __u16 ports[] = {22, 53, 443, 5432, 8443, 9500, 20000};
	static const __u8 protocols[] = {TCP, UDP};
	_cleanup_policy_doc_ struct policy_doc *doc = parse(agreement_doc);
	_cleanup_policy_entries_ struct policy_entries *set = compile(agreement_doc);
	size_t allowed = 0, denied_by_rule = 0, checked = 0;

	for (size_t f = 0; f < ARRAY_SIZE(view); f++) {
		for (size_t t = 0; t < ARRAY_SIZE(view); t++) {
			if (!view[f].local && !view[t].local)
				continue;
			for (size_t p = 0; p < ARRAY_SIZE(ports); p++) {
				for (size_t q = 0; q < ARRAY_SIZE(protocols); q++) {
					struct policy_verdict v;

					check_pair(doc, set, &view[f], &view[t], ports[p],
						   protocols[q]);
					check(doc, view[f].spiffe_id, view[t].spiffe_id, ports[p],
					      protocols[q], &v);
					allowed += v.action == FG_ACT_ALLOW;
					denied_by_rule += v.action == FG_ACT_DENY && v.rule_index;
					checked++;
				}
			}
		}
	}
	/* The document must exercise every outcome, or agreement proves little. */
	cr_expect_gt(allowed, 50, "%zu of %zu allowed", allowed, checked);
	cr_expect_gt(denied_by_rule, 10, "%zu of %zu denied by a rule", denied_by_rule, checked);
	cr_expect_gt(checked - allowed - denied_by_rule, 10, "default denies");
}

/* What another mesh may learn about: the targets its identities may call. */
Test(policy_compile, admits_from_td_names_what_a_trust_domain_may_call)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse(
		"version: 1\n"
		"rules:\n"
		"  - name: partner-to-api\n"
		"    action: allow\n"
		"    from: {spiffe_id: spiffe://b.example/*}\n"
		"    to: {spiffe_id: spiffe://a.example/ns/api}\n"
		"  - name: any-prod-to-web1\n"
		"    action: allow\n"
		"    from: {labels: {env: prod}}\n"
		"    to: {labels: {tier: web, env: prod}}\n"
		"  - name: c-to-db\n"
		"    action: allow\n"
		"    from: {trust_domain: c.example}\n"
		"    to: {spiffe_id: spiffe://a.example/ns/db}\n"
		"  - name: nobody-else\n"
		"    action: deny\n"
		"    from: any\n"
		"    to: {spiffe_id: spiffe://a.example/ns/web/w2}\n");

	cr_expect(policy_admits_from_td(doc, "b.example", &view[2]), "by an ID pattern of b");
	cr_expect(policy_admits_from_td(doc, "b.example", &view[0]), "labels may be anyone's");
	cr_expect_not(policy_admits_from_td(doc, "b.example", &view[3]), "db is c's only");
	cr_expect(policy_admits_from_td(doc, "c.example", &view[3]));
	cr_expect_not(policy_admits_from_td(doc, "b.example", &view[1]), "a deny rule exports nothing");
	cr_expect_not(policy_admits_from_td(NULL, "b.example", &view[2]), "no policy: nothing");

	cr_expect_not(policy_admits_to_td(doc, &view[3], "b.example"), "db calls nobody of b");
	cr_expect(policy_admits_to_td(doc, &view[2], "b.example"),
		  "api (env prod) may call b's identities labelled tier web, env prod");
	cr_expect(policy_admits_to_td(doc, &view[4], "a.example"), "the partner calls api");
}

/* ---------------------------------------------------------- transport */

static __u8 transport(const struct policy_entries *set, __u8 dir, __u32 src, __u32 dst)
{
	const struct policy_entry *e = find(set, dir, src, dst, 443, TCP);

	cr_assert_not_null(e, "no entry dir=%u %u -> %u", dir, src, dst);
	return e->value.transport;
}

Test(policy_compile, transport_is_direct_on_the_node_and_encrypted_off_it_by_default)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\nrules:\n"
		"- {name: r, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: any, ports: [443], protocols: [tcp]}\n"
		"- {name: s, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: {trust_domain: a.example}, ports: [443], protocols: [tcp]}\n");

	cr_expect_eq(transport(set, EG, WEB1, API), FG_TRANSPORT_DIRECT, "api is on this node");
	cr_expect_eq(transport(set, EG, WEB1, DB), FG_TRANSPORT_TUNNEL, "db is remote");
	cr_expect_eq(transport(set, EG, WEB1, FG_ID_ANY), FG_TRANSPORT_TUNNEL,
		     "any peer may be remote");
}

Test(policy_compile, a_document_may_trust_its_own_trust_domain_with_authentication)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\ntransport: authenticated\nrules:\n"
		"- {name: r, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: {spiffe_id: spiffe://a.example/ns/db}, ports: [443], protocols: [tcp]}\n"
		"- {name: x, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: {spiffe_id: spiffe://b.example/pay}, ports: [443], protocols: [tcp]}\n");

	cr_expect_eq(transport(set, EG, WEB1, DB), FG_TRANSPORT_DIRECT);
	cr_expect_eq(transport(set, EG, WEB1, PARTNER), FG_TRANSPORT_TUNNEL,
		     "but never a flow between two trust domains");
}

Test(policy_compile, a_rule_says_so_for_a_flow_between_trust_domains)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\ntransport: encrypted\nrules:\n"
		"- {name: x, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: {spiffe_id: spiffe://b.example/pay}, ports: [443], protocols: [tcp],"
		" transport: authenticated}\n"
		"- {name: y, action: allow, from: {spiffe_id: spiffe://b.example/pay},"
		" to: {spiffe_id: spiffe://a.example/ns/api}, ports: [443], protocols: [tcp]}\n");

	cr_expect_eq(transport(set, EG, WEB1, PARTNER), FG_TRANSPORT_DIRECT, "the rule's choice");
	cr_expect_eq(transport(set, IN, PARTNER, API), FG_TRANSPORT_TUNNEL,
		     "ingress entries carry it too: the flow must arrive through the tunnel");
}

Test(policy_compile, the_tunnel_wins_when_rules_meet)
{
	_cleanup_policy_entries_ struct policy_entries *set = compile(
		"version: 1\nrules:\n"
		"- {name: p, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: {spiffe_id: spiffe://a.example/ns/db}, ports: [443], protocols: [tcp],"
		" transport: authenticated}\n"
		"- {name: e, action: allow, from: {spiffe_id: spiffe://a.example/ns/web/w1},"
		" to: {spiffe_id: spiffe://a.example/ns/db}, ports: [443], protocols: [tcp],"
		" transport: encrypted}\n");

	cr_expect_eq(transport(set, EG, WEB1, DB), FG_TRANSPORT_TUNNEL);
}

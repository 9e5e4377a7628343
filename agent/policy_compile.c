// SPDX-License-Identifier: Apache-2.0
/*
 * The policy compiler, diff, check and printer. See policy_compile.h for
 * what an entry is made of and docs/policy.md for the language.
 *
 * Compilation is two passes per rule: which identities of the view each
 * side selects (a bool per identity), then the cross product of the local
 * ones with their peers, times ports and protocols, merged into a hash
 * table keyed by fg_policy_key. The table refuses to grow past the entry
 * cap, so a document that would expand to millions of entries fails after
 * at most max_entries of them were built, not after filling memory.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "policy_compile.h"
#include "spiffe.h"

/* The identities of this node, validated, with their parsed SPIFFE IDs. */
struct view {
	const struct policy_identity *ids;
	size_t n;
	struct spiffe_id *parsed;
};

/* Merged, sorted ports of a rule; all = the rule covers 1-65535 (port 0). */
struct port_set {
	struct policy_port_range *ranges;
	size_t n;
	bool all;
};

/* fg_policy_key -> entry index, open addressing with linear probing. */
struct table {
	struct policy_entry *entries;
	size_t n;
	size_t cap;	/* allocated entries */
	size_t max;	/* refuse to hold more */
	__u32 *slots;	/* entry index + 1; 0 = empty */
	size_t n_slots; /* a power of two, at least 2 * n */
};

struct compile_ctx {
	const struct policy_doc *doc;
	struct view view;
	struct table table;
	struct policy_error *err;
};

static const __u8 protos[] = {IPPROTO_TCP, IPPROTO_UDP};
static const unsigned int proto_bits[] = {POLICY_PROTO_TCP, POLICY_PROTO_UDP};

static int fail(struct policy_error *err, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes a message to err and returns r. */
static int fail(struct policy_error *err, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return r;
}

/* --- the identity view --------------------------------------------------- */

static int cmp_identity_id(const void *a, const void *b)
{
	const struct policy_identity *x = *(const struct policy_identity *const *)a;
	const struct policy_identity *y = *(const struct policy_identity *const *)b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_identity_spiffe(const void *a, const void *b)
{
	const struct policy_identity *x = *(const struct policy_identity *const *)a;
	const struct policy_identity *y = *(const struct policy_identity *const *)b;

	return strcmp(x->spiffe_id, y->spiffe_id);
}

/* A numeric id or a SPIFFE ID used twice would make entries ambiguous. */
static int view_check_unique(const struct view *v, struct policy_error *err)
{
	_cleanup_free_ const struct policy_identity **sorted = NULL;
	const struct policy_identity *a, *b;

	sorted = calloc(v->n ? v->n : 1, sizeof(*sorted));
	if (!sorted)
		return fail(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < v->n; i++)
		sorted[i] = &v->ids[i];
	qsort(sorted, v->n, sizeof(*sorted), cmp_identity_id);
	for (size_t i = 1; i < v->n; i++) {
		a = sorted[i - 1];
		b = sorted[i];
		if (a->id == b->id)
			return fail(err, -EINVAL, "identities '%s' and '%s' share numeric id %u",
				    a->spiffe_id, b->spiffe_id, a->id);
	}
	qsort(sorted, v->n, sizeof(*sorted), cmp_identity_spiffe);
	for (size_t i = 1; i < v->n; i++) {
		a = sorted[i - 1];
		b = sorted[i];
		if (!strcmp(a->spiffe_id, b->spiffe_id))
			return fail(err, -EINVAL,
				    "identity '%s' is listed twice (numeric ids %u and %u)",
				    a->spiffe_id, a->id, b->id);
	}
	return 0;
}

static int view_check_identity(const struct policy_identity *id, struct spiffe_id *parsed,
			       struct policy_error *err)
{
	char why[SPIFFE_WHY_MAX];

	if (!id->spiffe_id)
		return fail(err, -EINVAL, "identity %u has no SPIFFE ID", id->id);
	if (spiffe_parse(id->spiffe_id, parsed, why, sizeof(why)))
		return fail(err, -EINVAL, "identity %u: invalid SPIFFE ID '%.160s': %s", id->id,
			    id->spiffe_id, why);
	/* Never 0: the all-zero key is the generation entry. */
	if (id->id < FG_ID_DYNAMIC_MIN || id->id > FG_ID_DYNAMIC_MAX)
		return fail(err, -EINVAL, "identity '%s': numeric id %u outside %u-%u",
			    id->spiffe_id, id->id, FG_ID_DYNAMIC_MIN, FG_ID_DYNAMIC_MAX);
	if (id->n_labels && !id->labels)
		return fail(err, -EINVAL, "identity '%s': %zu labels but no array", id->spiffe_id,
			    id->n_labels);
	for (size_t i = 0; i < id->n_labels; i++)
		if (!id->labels[i].key || !id->labels[i].value)
			return fail(err, -EINVAL, "identity '%s': label %zu has no key or value",
				    id->spiffe_id, i);
	return 0;
}

static int view_init(struct view *v, const struct policy_identity *ids, size_t n,
		     struct policy_error *err)
{
	int r;

	if (n && !ids)
		return fail(err, -EINVAL, "%zu identities but no array", n);
	v->ids = ids;
	v->n = n;
	v->parsed = calloc(n ? n : 1, sizeof(*v->parsed));
	if (!v->parsed)
		return fail(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		r = view_check_identity(&ids[i], &v->parsed[i], err);
		if (r)
			return r;
	}
	return view_check_unique(v, err);
}

/* --- selectors ----------------------------------------------------------- */

/* The value of label key on an identity, or NULL when it has none. */
static const char *identity_label(const struct policy_identity *id, const char *key)
{
	for (size_t i = 0; i < id->n_labels; i++)
		if (!strcmp(id->labels[i].key, key))
			return id->labels[i].value;
	return NULL;
}

static bool label_matches(const struct policy_label_match *m, const struct policy_identity *id)
{
	const char *value = identity_label(id, m->key);

	if (m->op == POLICY_LABEL_EXISTS)
		return value;
	if (m->op == POLICY_LABEL_ABSENT)
		return !value;
	for (size_t i = 0; value && i < m->n_values; i++)
		if (!strcmp(m->values[i], value))
			return true;
	return false;
}

/* pat is sel's parsed spiffe_id (unused when sel has none). */
static bool selector_matches(const struct policy_selector *sel, const struct spiffe_pattern *pat,
			     const struct policy_identity *id, const struct spiffe_id *parsed)
{
	if (sel->spiffe_id && !spiffe_pattern_match(pat, parsed))
		return false;
	if (sel->trust_domain && !spiffe_in_trust_domain(parsed, sel->trust_domain))
		return false;
	for (size_t i = 0; i < sel->n_labels; i++)
		if (!label_matches(&sel->labels[i], id))
			return false;
	return true;
}

/*
 * sel's spiffe_id parsed into pat. Patterns were checked by the parser; a
 * document built by other means with a bad one selects nothing by it.
 */
static bool selector_pattern(const struct policy_selector *sel, struct spiffe_pattern *pat)
{
	return !sel->spiffe_id || !spiffe_pattern_parse(sel->spiffe_id, pat, NULL, 0);
}

/* Whether one identity is selected by a from/to. */
static bool peers_match(const struct policy_peers *peers, const struct policy_identity *id,
			const struct spiffe_id *parsed)
{
	struct spiffe_pattern pat = {};

	if (peers->any)
		return true;
	for (size_t i = 0; i < peers->n_sel; i++)
		if (selector_pattern(&peers->sel[i], &pat) &&
		    selector_matches(&peers->sel[i], &pat, id, parsed))
			return true;
	return false;
}

/* Whether peers could select an identity of trust domain td (labels are anyone's). */
static bool peers_may_select_td(const struct policy_peers *peers, const char *td)
{
	struct spiffe_pattern pat = {};

	if (peers->any)
		return true;
	for (size_t i = 0; i < peers->n_sel; i++) {
		const struct policy_selector *sel = &peers->sel[i];

		if (sel->trust_domain && strcmp(sel->trust_domain, td))
			continue;
		if (sel->spiffe_id && (!selector_pattern(sel, &pat) ||
				       !spiffe_in_trust_domain(&pat.base, td)))
			continue;
		return true;
	}
	return false;
}

bool policy_admits_from_td(const struct policy_doc *doc, const char *td,
			   const struct policy_identity *to)
{
	struct spiffe_id parsed;

	if (!doc || spiffe_parse(to->spiffe_id, &parsed, NULL, 0))
		return false;
	for (size_t i = 0; i < doc->n_rules; i++) {
		const struct policy_rule *r = &doc->rules[i];

		if (r->action == POLICY_ALLOW && peers_may_select_td(&r->from, td) &&
		    peers_match(&r->to, to, &parsed))
			return true;
	}
	return false;
}

bool policy_admits_to_td(const struct policy_doc *doc, const struct policy_identity *from,
			 const char *td)
{
	struct spiffe_id parsed;

	if (!doc || spiffe_parse(from->spiffe_id, &parsed, NULL, 0))
		return false;
	for (size_t i = 0; i < doc->n_rules; i++) {
		const struct policy_rule *r = &doc->rules[i];

		if (r->action == POLICY_ALLOW && peers_may_select_td(&r->to, td) &&
		    peers_match(&r->from, from, &parsed))
			return true;
	}
	return false;
}

/* match[i] = whether identity i of the view is selected; returns how many are. */
static size_t peers_select(const struct policy_peers *peers, const struct view *v, bool *match)
{
	struct spiffe_pattern pat = {};
	size_t count = 0;

	for (size_t i = 0; i < v->n; i++)
		match[i] = peers->any;
	for (size_t s = 0; !peers->any && s < peers->n_sel; s++) {
		if (!selector_pattern(&peers->sel[s], &pat))
			continue;
		for (size_t i = 0; i < v->n; i++)
			match[i] = match[i] || selector_matches(&peers->sel[s], &pat, &v->ids[i],
								&v->parsed[i]);
	}
	for (size_t i = 0; i < v->n; i++)
		count += match[i];
	return count;
}

/* --- ports --------------------------------------------------------------- */

static int cmp_range(const void *a, const void *b)
{
	const struct policy_port_range *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* The rule's ports sorted and merged; no ports or 1-65535 in all is `all`. */
static int port_set_init(struct port_set *ps, const struct policy_rule *rule)
{
	size_t n = 0;

	ps->all = !rule->n_ports;
	if (ps->all)
		return 0;
	ps->ranges = malloc(rule->n_ports * sizeof(*ps->ranges));
	if (!ps->ranges)
		return -ENOMEM;
	memcpy(ps->ranges, rule->ports, rule->n_ports * sizeof(*ps->ranges));
	qsort(ps->ranges, rule->n_ports, sizeof(*ps->ranges), cmp_range);
	for (size_t i = 0; i < rule->n_ports; i++) {
		struct policy_port_range *cur = &ps->ranges[i];

		/* Overlapping or adjacent: extend the previous range. */
		if (n && (__u32)cur->first <= (__u32)ps->ranges[n - 1].last + 1) {
			if (cur->last > ps->ranges[n - 1].last)
				ps->ranges[n - 1].last = cur->last;
			continue;
		}
		ps->ranges[n++] = *cur;
	}
	ps->n = n;
	ps->all = n == 1 && ps->ranges[0].first == 1 && ps->ranges[0].last == 65535;
	return 0;
}

static void port_set_release(struct port_set *ps)
{
	free(ps->ranges);
	ps->ranges = NULL;
}

/* Key ports the set stands for: 1 (port 0) when all, else every port. */
static size_t port_set_count(const struct port_set *ps)
{
	size_t count = 0;

	if (ps->all)
		return 1;
	for (size_t i = 0; i < ps->n; i++)
		count += (size_t)ps->ranges[i].last - ps->ranges[i].first + 1;
	return count;
}

static bool port_set_contains(const struct port_set *ps, __u16 port)
{
	if (ps->all)
		return true;
	for (size_t i = 0; i < ps->n; i++)
		if (port >= ps->ranges[i].first && port <= ps->ranges[i].last)
			return true;
	return false;
}

static size_t proto_count(unsigned int mask)
{
	return !!(mask & POLICY_PROTO_TCP) + !!(mask & POLICY_PROTO_UDP);
}

/* --- the entry table ----------------------------------------------------- */

static size_t key_hash(const struct fg_policy_key *k)
{
	__u64 h = ((__u64)k->src_id << 32 | k->dst_id) * 0x9e3779b97f4a7c15ULL;

	h ^= ((__u64)k->port << 16 | (__u64)k->proto << 8 | k->dir) + (h >> 29);
	h *= 0xbf58476d1ce4e5b9ULL;
	return (size_t)(h ^ (h >> 32));
}

static bool key_equal(const struct fg_policy_key *a, const struct fg_policy_key *b)
{
	return a->src_id == b->src_id && a->dst_id == b->dst_id && a->port == b->port &&
	       a->proto == b->proto && a->dir == b->dir;
}

static int table_rehash(struct table *t, size_t n_slots)
{
	__u32 *slots = calloc(n_slots, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t s = key_hash(&t->entries[i].key) & (n_slots - 1);

		while (slots[s])
			s = (s + 1) & (n_slots - 1);
		slots[s] = (__u32)i + 1;
	}
	free(t->slots);
	t->slots = slots;
	t->n_slots = n_slots;
	return 0;
}

/* Room for one more entry, in the array and (at most half full) in the slots. */
static int table_reserve(struct table *t)
{
	struct policy_entry *grown;
	size_t cap;

	if (t->n == t->max)
		return -E2BIG;
	if (t->n == t->cap) {
		cap = t->cap ? t->cap * 2 : 1024;
		if (cap > t->max)
			cap = t->max;
		grown = realloc(t->entries, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		t->entries = grown;
		t->cap = cap;
	}
	if (2 * (t->n + 1) > t->n_slots)
		return table_rehash(t, t->n_slots ? t->n_slots * 2 : 2048);
	return 0;
}

/*
 * Deny overrides allow whatever the order; otherwise the first rule keeps
 * its id (rules arrive in document order), and allows keep the strictest
 * auth of all of them.
 */
static void merge_value(struct fg_policy_value *old, const struct fg_policy_value *v)
{
	if (old->action == FG_ACT_DENY)
		return;
	if (v->action == FG_ACT_DENY) {
		*old = *v;
		return;
	}
	if (v->auth > old->auth)
		old->auth = v->auth;
	if (v->transport > old->transport)	/* the tunnel is the stricter */
		old->transport = v->transport;
}

/* The slot holding k, or the empty slot where k belongs; n_slots must not be 0. */
static size_t table_slot(const struct table *t, const struct fg_policy_key *k)
{
	size_t mask = t->n_slots - 1, s = key_hash(k) & mask;

	while (t->slots[s] && !key_equal(&t->entries[t->slots[s] - 1].key, k))
		s = (s + 1) & mask;
	return s;
}

static int table_put(struct table *t, const struct fg_policy_key *k,
		     const struct fg_policy_value *v)
{
	size_t s;
	int r;

	if (t->n_slots) {
		s = table_slot(t, k);
		if (t->slots[s]) {
			merge_value(&t->entries[t->slots[s] - 1].value, v);
			return 0;
		}
	}
	r = table_reserve(t);
	if (r)
		return r;
	s = table_slot(t, k);
	t->entries[t->n] = (struct policy_entry){.key = *k, .value = *v};
	t->slots[s] = (__u32)++t->n;
	return 0;
}

static void table_release(struct table *t)
{
	free(t->entries);
	free(t->slots);
	*t = (struct table){};
}

/* --- compilation --------------------------------------------------------- */

/* What one rule contributes, worked out before its entries are emitted. */
struct rule_plan {
	const struct policy_rule *rule;
	bool *from; /* per identity of the view: selected by from */
	bool *to;
	size_t n_from;
	size_t n_to;
	struct port_set ports;
	struct fg_policy_value value;
};

/*
 * How the flow between local identity i and peer j (-1: any peer) travels:
 * directly when it stays on the node, else as the rule says, else as the
 * document says if both ends are of one trust domain, else encrypted. A
 * document's `authenticated` never covers two trust domains.
 */
static __u8 transport_of(const struct compile_ctx *ctx, const struct rule_plan *p, size_t i,
			 ssize_t j)
{
	const struct view *v = &ctx->view;

	if (p->value.action == FG_ACT_DENY || (j >= 0 && v->ids[j].local))
		return FG_TRANSPORT_DIRECT;
	if (p->rule->transport != POLICY_TRANSPORT_DEFAULT)
		return p->rule->transport == POLICY_TRANSPORT_ENCRYPTED ? FG_TRANSPORT_TUNNEL
									: FG_TRANSPORT_DIRECT;
	if (ctx->doc->transport == POLICY_TRANSPORT_AUTHENTICATED && j >= 0 &&
	    v->parsed[i].td_len == v->parsed[j].td_len &&
	    memcmp(v->parsed[i].td, v->parsed[j].td, v->parsed[i].td_len) == 0)
		return FG_TRANSPORT_DIRECT;
	return FG_TRANSPORT_TUNNEL;
}

static int emit_pair(struct compile_ctx *ctx, const struct rule_plan *p, __u8 dir, size_t li,
		     ssize_t pj)
{
	__u32 local = ctx->view.ids[li].id, peer = pj >= 0 ? ctx->view.ids[pj].id : FG_ID_ANY;
	struct fg_policy_key k = {
		.src_id = dir == FG_DIR_EGRESS ? local : peer,
		.dst_id = dir == FG_DIR_EGRESS ? peer : local,
		.dir = dir,
	};
	struct fg_policy_value value = p->value;
	int r = 0;

	value.transport = transport_of(ctx, p, li, pj);

	/* The all-zero key is the generation entry: identities are never 0. */
	assert(k.src_id && k.dst_id && k.dir != FG_DIR_META);
	for (size_t i = 0; !r && i < sizeof(protos); i++) {
		if (!(p->rule->protocols & proto_bits[i]))
			continue;
		k.proto = protos[i];
		if (p->ports.all) {
			k.port = 0;
			r = table_put(&ctx->table, &k, &value);
			continue;
		}
		for (size_t j = 0; !r && j < p->ports.n; j++) {
			for (__u32 port = p->ports.ranges[j].first;
			     !r && port <= p->ports.ranges[j].last; port++) {
				k.port = (__u16)port;
				r = table_put(&ctx->table, &k, &value);
			}
		}
	}
	return r;
}

/*
 * The entries of one direction: the local side exact (every selected local
 * identity), the peer side FG_ID_ANY when it is `any`, else every selected
 * identity, local or remote.
 */
static int emit_direction(struct compile_ctx *ctx, const struct rule_plan *p, __u8 dir)
{
	bool egress = dir == FG_DIR_EGRESS;
	const struct policy_peers *peer_side = egress ? &p->rule->to : &p->rule->from;
	const bool *local_match = egress ? p->from : p->to;
	const bool *peer_match = egress ? p->to : p->from;
	const struct view *v = &ctx->view;
	int r = 0;

	for (size_t i = 0; !r && i < v->n; i++) {
		if (!v->ids[i].local || !local_match[i])
			continue;
		if (peer_side->any) {
			r = emit_pair(ctx, p, dir, i, -1);
			continue;
		}
		for (size_t j = 0; !r && j < v->n; j++)
			if (peer_match[j])
				r = emit_pair(ctx, p, dir, i, (ssize_t)j);
	}
	return r;
}

static __u64 mul_sat(__u64 a, __u64 b)
{
	__u64 r;

	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static size_t count_local(const struct view *v, const bool *match)
{
	size_t count = 0;

	for (size_t i = 0; i < v->n; i++)
		count += v->ids[i].local && match[i];
	return count;
}

/* How many entries the rule produces before merging, for the cap's message. */
static __u64 plan_estimate(const struct compile_ctx *ctx, const struct rule_plan *p)
{
	__u64 per_pair = mul_sat(port_set_count(&p->ports), proto_count(p->rule->protocols));
	__u64 egress = mul_sat(count_local(&ctx->view, p->from), p->rule->to.any ? 1 : p->n_to);
	__u64 ingress = mul_sat(count_local(&ctx->view, p->to), p->rule->from.any ? 1 : p->n_from);
	__u64 pairs = egress + ingress < egress ? UINT64_MAX : egress + ingress;

	return mul_sat(pairs, per_pair);
}

static int compile_rule(struct compile_ctx *ctx, size_t idx, bool *from, bool *to)
{
	const struct policy_rule *rule = &ctx->doc->rules[idx];
	bool deny = rule->action == POLICY_DENY;
	struct rule_plan p = {
		.rule = rule,
		.from = from,
		.to = to,
		.value.action = deny ? FG_ACT_DENY : FG_ACT_ALLOW,
		.value.auth =
			!deny && rule->auth == POLICY_AUTH_REQUIRED ? FG_AUTH_MTLS : FG_AUTH_NONE,
		.value.rule_id = (__u32)idx + 1,
	};
	int r;

	if (port_set_init(&p.ports, rule))
		return fail(ctx->err, -ENOMEM, "out of memory");
	p.n_from = peers_select(&rule->from, &ctx->view, from);
	p.n_to = peers_select(&rule->to, &ctx->view, to);
	r = emit_direction(ctx, &p, FG_DIR_EGRESS);
	if (!r)
		r = emit_direction(ctx, &p, FG_DIR_INGRESS);
	if (r == -E2BIG)
		fail(ctx->err, r,
		     "rule '%s' (line %u): the policy needs more than %zu kernel entries on this node; "
		     "this rule alone makes %llu (identity pairs x ports x protocols: every port of a "
		     "range is one entry); narrow its selectors or port ranges",
		     rule->name, rule->line, ctx->table.max,
		     (unsigned long long)plan_estimate(ctx, &p));
	else if (r == -ENOMEM)
		fail(ctx->err, r, "out of memory");
	port_set_release(&p.ports);
	return r;
}

static int cmp_key(const struct fg_policy_key *a, const struct fg_policy_key *b)
{
	if (a->dir != b->dir)
		return a->dir < b->dir ? -1 : 1;
	if (a->src_id != b->src_id)
		return a->src_id < b->src_id ? -1 : 1;
	if (a->dst_id != b->dst_id)
		return a->dst_id < b->dst_id ? -1 : 1;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	return a->proto < b->proto ? -1 : a->proto > b->proto;
}

static int cmp_entry(const void *a, const void *b)
{
	return cmp_key(&((const struct policy_entry *)a)->key,
		       &((const struct policy_entry *)b)->key);
}

void policy_entries_sort(struct policy_entries *set)
{
	if (set->n)
		qsort(set->entries, set->n, sizeof(*set->entries), cmp_entry);
}

const struct policy_entry *policy_entries_find(const struct policy_entries *set,
					       const struct fg_policy_key *key)
{
	struct policy_entry probe = {.key = *key};

	if (!set->n)
		return NULL;
	return bsearch(&probe, set->entries, set->n, sizeof(*set->entries), cmp_entry);
}

static int compile_rules(struct compile_ctx *ctx)
{
	_cleanup_free_ bool *from = NULL;
	_cleanup_free_ bool *to = NULL;
	size_t n = ctx->view.n ? ctx->view.n : 1;
	int r;

	from = calloc(n, sizeof(*from));
	to = calloc(n, sizeof(*to));
	if (!from || !to)
		return fail(ctx->err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < ctx->doc->n_rules; i++) {
		r = compile_rule(ctx, i, from, to);
		if (r)
			return r;
	}
	return 0;
}

static int compile_output(struct table *t, struct policy_entries **out, struct policy_error *err)
{
	struct policy_entries *set = calloc(1, sizeof(*set));

	if (!set)
		return fail(err, -ENOMEM, "out of memory");
	set->entries = take_ptr(t->entries);
	set->n = t->n;
	policy_entries_sort(set);
	*out = set;
	return 0;
}

int policy_compile(const struct policy_doc *doc, const struct policy_identity *ids, size_t n_ids,
		   const struct policy_compile_opts *opts, struct policy_entries **out,
		   struct policy_error *err)
{
	struct compile_ctx ctx = {.doc = doc, .err = err};
	int r;

	ctx.table.max = opts && opts->max_entries ? opts->max_entries : POLICY_COMPILE_MAX_ENTRIES;
	/* Slots hold an entry's index + 1 in 32 bits. */
	if (ctx.table.max > UINT32_MAX - 1)
		ctx.table.max = UINT32_MAX - 1;
	r = view_init(&ctx.view, ids, n_ids, err);
	if (!r)
		r = compile_rules(&ctx);
	if (!r)
		r = compile_output(&ctx.table, out, err);
	free(ctx.view.parsed);
	table_release(&ctx.table);
	return r;
}

void policy_entries_free(struct policy_entries *set)
{
	if (!set)
		return;
	free(set->entries);
	free(set);
}

/* --- check --------------------------------------------------------------- */

/* One end of the connection being checked. */
struct party {
	struct policy_identity id; /* from the view, or the bare SPIFFE ID */
	struct spiffe_id parsed;
	bool known;
};

/*
 * A candidate deciding rule. probe is the datapath's probe order of the
 * entry the rule makes for this connection (exact peer and port first, then
 * any peer, then any port, then both); the datapath names the rule of the
 * first probe that hits, and among rules hitting the same key the first in
 * the document keeps the entry.
 */
struct pick {
	size_t idx; /* 1-based; 0 = none */
	unsigned int probe;
};

static int party_init(struct party *p, const struct policy_identity *ids, size_t n_ids,
		      const char *spiffe_id)
{
	if (spiffe_parse(spiffe_id, &p->parsed, NULL, 0))
		return -EINVAL;
	p->id = (struct policy_identity){.spiffe_id = spiffe_id};
	p->known = false;
	for (size_t i = 0; i < n_ids; i++) {
		if (ids[i].spiffe_id && !strcmp(ids[i].spiffe_id, spiffe_id)) {
			p->id = ids[i];
			p->id.spiffe_id = spiffe_id;
			p->known = true;
			break;
		}
	}
	return 0;
}

static void pick_better(struct pick *best, size_t idx, unsigned int probe)
{
	if (!best->idx || probe < best->probe)
		*best = (struct pick){.idx = idx, .probe = probe};
}

static const char *proto_name(__u8 proto)
{
	return proto == IPPROTO_TCP ? "tcp" : proto == IPPROTO_UDP ? "udp" : "?";
}

/* Whether rule i covers the connection; *probe is where its entry sits. */
static int rule_covers(const struct policy_rule *rule, const struct party *from,
		       const struct party *to, __u16 port, unsigned int proto_bit, __u8 dir,
		       unsigned int *probe)
{
	struct port_set ps = {};
	bool covers, peer_any;

	if (!(rule->protocols & proto_bit))
		return 0;
	if (port_set_init(&ps, rule))
		return -ENOMEM;
	covers = port_set_contains(&ps, port) &&
		 peers_match(&rule->from, &from->id, &from->parsed) &&
		 peers_match(&rule->to, &to->id, &to->parsed);
	peer_any = dir == FG_DIR_EGRESS ? rule->to.any : rule->from.any;
	*probe = (ps.all ? 2 : 0) + (peer_any ? 1 : 0);
	port_set_release(&ps);
	return covers;
}

static void verdict_words(const struct policy_doc *doc, const struct pick *deny,
			  const struct pick *allow, size_t auth_idx, struct policy_verdict *v)
{
	const char *name = v->rule_name;
	char *buf = v->reason;
	size_t len = sizeof(v->reason);

	if (deny->idx && allow->idx)
		snprintf(buf, len, "denied by rule '%s' (deny overrides allow '%s')", name,
			 doc->rules[allow->idx - 1].name);
	else if (deny->idx)
		snprintf(buf, len, "denied by rule '%s'", name);
	else if (auth_idx && auth_idx != allow->idx)
		snprintf(buf, len, "allowed by rule '%s', mTLS required by rule '%s'", name,
			 doc->rules[auth_idx - 1].name);
	else if (auth_idx)
		snprintf(buf, len, "allowed by rule '%s', mTLS required", name);
	else
		snprintf(buf, len, "allowed by rule '%s'", name);
}

static void verdict_fill(const struct policy_doc *doc, const struct pick *deny,
			 const struct pick *allow, size_t auth_idx, struct policy_verdict *v)
{
	const struct pick *decides = deny->idx ? deny : allow;

	v->action = deny->idx ? FG_ACT_DENY : FG_ACT_ALLOW;
	v->auth = !deny->idx && auth_idx ? FG_AUTH_MTLS : FG_AUTH_NONE;
	v->rule_index = decides->idx;
	v->rule_name = doc->rules[decides->idx - 1].name;
	v->overridden_index = deny->idx ? allow->idx : 0;
	verdict_words(doc, deny, allow, auth_idx, v);
}

/* transport_of() for a check: the rule, and where the two ends are. */
static __u8 party_transport(const struct policy_doc *doc, const struct policy_rule *rule,
			    const struct party *from, const struct party *to)
{
	if (from->id.local && to->id.local)
		return FG_TRANSPORT_DIRECT;
	if (rule->transport != POLICY_TRANSPORT_DEFAULT)
		return rule->transport == POLICY_TRANSPORT_ENCRYPTED ? FG_TRANSPORT_TUNNEL
								     : FG_TRANSPORT_DIRECT;
	if (doc->transport == POLICY_TRANSPORT_AUTHENTICATED &&
	    from->parsed.td_len == to->parsed.td_len &&
	    memcmp(from->parsed.td, to->parsed.td, from->parsed.td_len) == 0)
		return FG_TRANSPORT_DIRECT;
	return FG_TRANSPORT_TUNNEL;
}

int policy_check(const struct policy_doc *doc, const struct policy_identity *ids, size_t n_ids,
		 const char *from_id, const char *to_id, __u16 port, __u8 proto,
		 struct policy_verdict *result)
{
	unsigned int bit = proto == IPPROTO_TCP ? POLICY_PROTO_TCP : POLICY_PROTO_UDP;
	struct pick deny = {}, allow = {};
	struct party from, to;
	size_t auth_idx = 0;
	unsigned int probe;
	__u8 dir, transport = FG_TRANSPORT_DIRECT;
	int r;

	if (!port || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return -EINVAL;
	if (party_init(&from, ids, n_ids, from_id) || party_init(&to, ids, n_ids, to_id))
		return -EINVAL;
	/* The initiator's node judges first; a remote initiator is judged at ingress here. */
	dir = !from.id.local && to.id.local ? FG_DIR_INGRESS : FG_DIR_EGRESS;
	for (size_t i = 0; i < doc->n_rules; i++) {
		const struct policy_rule *rule = &doc->rules[i];

		r = rule_covers(rule, &from, &to, port, bit, dir, &probe);
		if (r < 0)
			return r;
		if (!r)
			continue;
		if (rule->action == POLICY_DENY) {
			pick_better(&deny, i + 1, probe);
			continue;
		}
		pick_better(&allow, i + 1, probe);
		if (!auth_idx && rule->auth == POLICY_AUTH_REQUIRED)
			auth_idx = i + 1;
		if (party_transport(doc, rule, &from, &to) > transport)
			transport = FG_TRANSPORT_TUNNEL;	/* as the entries merge */
	}
	*result = (struct policy_verdict){.action = FG_ACT_DENY, .dir = dir};
	if (deny.idx || allow.idx)
		verdict_fill(doc, &deny, &allow, auth_idx, result);
	else
		snprintf(result->reason, sizeof(result->reason),
			 "no rule allows %s -> %s port %u/%s: default deny", from_id, to_id, port,
			 proto_name(proto));
	if (result->action == FG_ACT_ALLOW)
		result->transport = transport;
	return 0;
}

/* --- diff ---------------------------------------------------------------- */

static bool value_equal(const struct fg_policy_value *a, const struct fg_policy_value *b)
{
	return a->action == b->action && a->auth == b->auth && a->transport == b->transport &&
	       a->rule_id == b->rule_id;
}

/* A sorted copy of set without generation entries. */
static int sorted_rules(const struct policy_entries *set, struct policy_entries *out)
{
	out->n = 0;
	out->entries = malloc((set->n ? set->n : 1) * sizeof(*out->entries));
	if (!out->entries)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++)
		if (set->entries[i].key.dir != FG_DIR_META)
			out->entries[out->n++] = set->entries[i];
	policy_entries_sort(out);
	return 0;
}

static void entries_push(struct policy_entries *set, const struct policy_entry *e)
{
	set->entries[set->n++] = *e;
}

/* Merge walk of two sorted sets; added and removed have room for all of new and old. */
static void diff_walk(const struct policy_entries *o, const struct policy_entries *n,
		      struct policy_diff *d)
{
	size_t i = 0, j = 0;

	while (i < o->n || j < n->n) {
		int c = i == o->n   ? 1
			: j == n->n ? -1
				    : cmp_key(&o->entries[i].key, &n->entries[j].key);

		if (c < 0) {
			entries_push(&d->removed, &o->entries[i++]);
		} else if (c > 0) {
			entries_push(&d->added, &n->entries[j++]);
		} else {
			if (!value_equal(&o->entries[i].value, &n->entries[j].value)) {
				entries_push(&d->removed, &o->entries[i]);
				entries_push(&d->added, &n->entries[j]);
			}
			i++;
			j++;
		}
	}
}

int policy_diff(const struct policy_entries *old, const struct policy_entries *new,
		struct policy_diff **out)
{
	struct policy_entries o = {}, n = {};
	struct policy_diff *d = calloc(1, sizeof(*d));
	int r = d ? 0 : -ENOMEM;

	if (!r)
		r = sorted_rules(old, &o);
	if (!r)
		r = sorted_rules(new, &n);
	if (!r) {
		d->removed.entries = malloc((o.n ? o.n : 1) * sizeof(*o.entries));
		d->added.entries = malloc((n.n ? n.n : 1) * sizeof(*n.entries));
		if (!d->removed.entries || !d->added.entries)
			r = -ENOMEM;
	}
	if (!r)
		diff_walk(&o, &n, d);
	free(o.entries);
	free(n.entries);
	if (r)
		policy_diff_free(d);
	else
		*out = d;
	return r;
}

void policy_diff_free(struct policy_diff *diff)
{
	if (!diff)
		return;
	free(diff->added.entries);
	free(diff->removed.entries);
	free(diff);
}

/* --- printing ------------------------------------------------------------ */

/* Identities by numeric id, for naming the sides of many entries. */
struct namer {
	const struct policy_identity **by_id;
	size_t n;
};

static int namer_init(struct namer *nm, const struct policy_identity *ids, size_t n_ids)
{
	nm->n = 0;
	nm->by_id = calloc(n_ids ? n_ids : 1, sizeof(*nm->by_id));
	if (!nm->by_id)
		return -ENOMEM;
	for (size_t i = 0; i < n_ids; i++)
		if (ids[i].spiffe_id)
			nm->by_id[nm->n++] = &ids[i];
	qsort(nm->by_id, nm->n, sizeof(*nm->by_id), cmp_identity_id);
	return 0;
}

static void namer_side(const struct namer *nm, __u32 id, char *buf, size_t len)
{
	struct policy_identity probe = {.id = id};
	const struct policy_identity *key = &probe, **hit = NULL;

	if (id == FG_ID_ANY) {
		snprintf(buf, len, "any");
		return;
	}
	if (nm->n)
		hit = bsearch(&key, nm->by_id, nm->n, sizeof(*nm->by_id), cmp_identity_id);
	if (hit)
		snprintf(buf, len, "%s", (*hit)->spiffe_id);
	else
		snprintf(buf, len, "id:%u", id);
}

static const char *action_word(__u8 action)
{
	switch (action) {
	case FG_ACT_ALLOW:
		return "allow";
	case FG_ACT_DENY:
		return "deny";
	case FG_ACT_META:
		return "meta";
	default:
		return "none";
	}
}

static int format_entry(const struct namer *nm, const struct policy_entry *e, char *buf, size_t len)
{
	const struct fg_policy_key *k = &e->key;
	char src[SPIFFE_ID_MAX + 16], dst[SPIFFE_ID_MAX + 16], port[8];

	if (k->dir == FG_DIR_META)
		return snprintf(buf, len, "meta generation=%u", e->value.rule_id);
	namer_side(nm, k->src_id, src, sizeof(src));
	namer_side(nm, k->dst_id, dst, sizeof(dst));
	if (k->port)
		snprintf(port, sizeof(port), "%u", k->port);
	else
		snprintf(port, sizeof(port), "any");
	return snprintf(buf, len, "%s %s -> %s port %s/%s %s auth=%s rule=%u",
			k->dir == FG_DIR_EGRESS ? "egress" : "ingress", src, dst, port,
			k->proto == IPPROTO_TCP	  ? "tcp"
			: k->proto == IPPROTO_UDP ? "udp"
						  : "?",
			action_word(e->value.action),
			e->value.auth == FG_AUTH_MTLS ? "mtls" : "none", e->value.rule_id);
}

int policy_entry_format(const struct policy_entry *e, const struct policy_identity *ids,
			size_t n_ids, char *buf, size_t len)
{
	struct namer nm;
	int r;

	if (namer_init(&nm, ids, n_ids))
		return -ENOMEM;
	r = format_entry(&nm, e, buf, len);
	free(nm.by_id);
	return r;
}

static int print_set(FILE *f, const struct namer *nm, const char *prefix,
		     const struct policy_entries *set)
{
	char line[POLICY_ENTRY_TEXT_MAX];

	for (size_t i = 0; i < set->n; i++) {
		format_entry(nm, &set->entries[i], line, sizeof(line));
		if (fprintf(f, "%s%s\n", prefix, line) < 0)
			return -EIO;
	}
	return 0;
}

int policy_entries_print(FILE *f, const struct policy_entries *set,
			 const struct policy_identity *ids, size_t n_ids)
{
	struct namer nm;
	int r;

	if (namer_init(&nm, ids, n_ids))
		return -ENOMEM;
	r = print_set(f, &nm, "", set);
	free(nm.by_id);
	return r;
}

int policy_diff_print(FILE *f, const struct policy_diff *diff, const struct policy_identity *ids,
		      size_t n_ids)
{
	struct namer nm;
	int r;

	if (namer_init(&nm, ids, n_ids))
		return -ENOMEM;
	r = print_set(f, &nm, "- ", &diff->removed);
	if (!r)
		r = print_set(f, &nm, "+ ", &diff->added);
	free(nm.by_id);
	return r;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Parser of the policy language. libyaml loads the whole document into a
 * node tree first (JSON reads as YAML flow style), then the tree is walked
 * and checked against the schema. Every node carries its position, so every
 * error names the line and column it is about.
 *
 * libyaml does not resolve plain scalars to types: "80" and 80 are both
 * strings to it. Types are decided here from the scalar's style: a number or
 * a boolean must be a plain (unquoted) scalar, so "80" in quotes is a string
 * and is refused where a number belongs.
 *
 * User text echoed in a message is cut at 160 bytes ("%.160s") so that the
 * cause after it still fits in the message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "cleanup.h"
#include "policy_parse.h"
#include "spiffe.h"

struct parse_ctx {
	const char *name; /* the document's name in messages */
	yaml_document_t *ydoc;
	struct policy_error *err;
	size_t rule_no;	       /* 1-based; 0 outside a rule */
	const char *rule_name; /* NULL until the rule's name is known */
	size_t *names;	       /* hash set of rule names: rule index + 1, 0 = empty */
	size_t n_names;	       /* slots, a power of two */
};

static const char *const doc_keys[] = {"version", "transport", "rules", NULL};
static const char *const rule_keys[] = {"name",	 "action",    "from", "to",
					"ports", "protocols", "auth", "transport", NULL};
static const char *const selector_keys[] = {"spiffe_id", "trust_domain", "labels", NULL};
static const char *const exists_keys[] = {"exists", NULL};

static int fail(struct parse_ctx *c, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes "NAME:LINE:COLUMN: [rule 'R': ]MESSAGE" about node n; returns -EINVAL. */
static int fail(struct parse_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	char *msg = c->err->msg;
	size_t used;
	va_list ap;

	snprintf(msg, POLICY_ERROR_MAX, "%s:%zu:%zu: ", c->name, n->start_mark.line + 1,
		 n->start_mark.column + 1);
	used = strlen(msg);
	if (c->rule_name)
		snprintf(msg + used, POLICY_ERROR_MAX - used, "rule '%.60s': ", c->rule_name);
	else if (c->rule_no)
		snprintf(msg + used, POLICY_ERROR_MAX - used, "rule #%zu: ", c->rule_no);
	used = strlen(msg);
	va_start(ap, fmt);
	vsnprintf(msg + used, POLICY_ERROR_MAX - used, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int fail_nomem(struct parse_ctx *c)
{
	snprintf(c->err->msg, sizeof(c->err->msg), "%s: out of memory", c->name);
	return -ENOMEM;
}

static yaml_node_t *node_at(struct parse_ctx *c, int id)
{
	return yaml_document_get_node(c->ydoc, id);
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* The YAML 1.2 core schema's null: "", ~, null, Null, NULL, unquoted. */
static bool is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	if (!is_plain(n))
		return false;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(scalar(n), nulls[i]))
			return true;
	return false;
}

static const char *kind(const yaml_node_t *n)
{
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	return is_null(n) ? "null" : "a scalar";
}

/* A non-null scalar of any style, without NUL or control bytes. */
static int get_string(struct parse_ctx *c, const yaml_node_t *n, const char *what, const char **out)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return fail(c, n, "%s: expected a string, got %s", what, kind(n));
	s = scalar(n);
	if (strlen(s) != n->data.scalar.length)
		return fail(c, n, "%s: contains a NUL byte", what);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fail(c, n, "%s: contains control character 0x%02x", what,
				    (unsigned char)*p);
	*out = s;
	return 0;
}

/* Decimal digits only, no sign, no leading zero; -ERANGE above max. */
static int parse_decimal(const char *s, __u64 max, __u64 *out)
{
	__u64 v = 0;

	if (!*s || (s[0] == '0' && s[1]))
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (max - (__u64)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (__u64)(*s - '0');
	}
	*out = v;
	return 0;
}

static bool is_decimal(const yaml_node_t *n)
{
	__u64 v;

	return parse_decimal(scalar(n), UINT64_MAX, &v) != -EINVAL;
}

static int get_bool(struct parse_ctx *c, const yaml_node_t *n, const char *what, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};

	for (size_t i = 0; is_plain(n) && i < 3; i++) {
		if (!strcmp(scalar(n), yes[i]) || !strcmp(scalar(n), no[i])) {
			*out = !strcmp(scalar(n), yes[i]);
			return 0;
		}
	}
	if (n->type == YAML_SCALAR_NODE)
		return fail(c, n, "%s: expected true or false, got '%.160s'", what, scalar(n));
	return fail(c, n, "%s: expected true or false, got %s", what, kind(n));
}

static int dup_string(struct parse_ctx *c, const char *s, char **out)
{
	*out = strdup(s);
	return *out ? 0 : fail_nomem(c);
}

static bool key_allowed(const char *const *allowed, const char *key)
{
	for (; *allowed; allowed++)
		if (!strcmp(*allowed, key))
			return true;
	return false;
}

static void join_keys(const char *const *keys, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (; *keys && used < len; keys++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", *keys);
}

/*
 * Every key of mapping n is a string, appears once, and (when allowed is not
 * NULL) is one of allowed. YAML forbids duplicate keys but libyaml does not
 * check; accepting them would let two readers of one file disagree.
 */
static int check_keys(struct parse_ctx *c, const yaml_node_t *n, const char *const *allowed)
{
	yaml_node_pair_t *first = n->data.mapping.pairs.start;

	for (yaml_node_pair_t *p = first; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *key = node_at(c, p->key);
		char list[128];

		if (key->type != YAML_SCALAR_NODE)
			return fail(c, key, "keys must be strings, got %s", kind(key));
		if (allowed && !key_allowed(allowed, scalar(key))) {
			join_keys(allowed, list, sizeof(list));
			return fail(c, key, "unknown key '%.160s' (expected %s)", scalar(key),
				    list);
		}
		for (yaml_node_pair_t *q = first; q < p; q++) {
			yaml_node_t *other = node_at(c, q->key);

			if (other->type == YAML_SCALAR_NODE && !strcmp(scalar(other), scalar(key)))
				return fail(c, key, "duplicate key '%.160s' (first at line %zu)",
					    scalar(key), other->start_mark.line + 1);
		}
	}
	return 0;
}

/* The value of key in mapping n, or NULL. */
static yaml_node_t *map_get(struct parse_ctx *c, const yaml_node_t *n, const char *key)
{
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node_at(c, p->key);

		if (k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), key))
			return node_at(c, p->value);
	}
	return NULL;
}

static int map_require(struct parse_ctx *c, const yaml_node_t *n, const char *key,
		       yaml_node_t **out)
{
	yaml_node_t *v = map_get(c, n, key);

	if (!v)
		return fail(c, n, "missing '%s'", key);
	*out = v;
	return 0;
}

static size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *seq_item(struct parse_ctx *c, const yaml_node_t *n, size_t i)
{
	return node_at(c, n->data.sequence.items.start[i]);
}

static int require_list(struct parse_ctx *c, const yaml_node_t *n, const char *what)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return fail(c, n, "'%s': expected a list, got %s", what, kind(n));
	if (!seq_len(n))
		return fail(c, n, "'%s': empty list", what);
	return 0;
}

/* --- labels -------------------------------------------------------------- */

static int get_label_text(struct parse_ctx *c, const yaml_node_t *n, const char *what,
			  const char **out)
{
	const char *s;
	int r;

	r = get_string(c, n, what, &s);
	if (r)
		return r;
	if (!*s)
		return fail(c, n, "%s: empty", what);
	if (strlen(s) > POLICY_LABEL_MAX)
		return fail(c, n, "%s: longer than %d bytes", what, POLICY_LABEL_MAX);
	*out = s;
	return 0;
}

/* key: {exists: BOOL} */
static int parse_label_exists(struct parse_ctx *c, const yaml_node_t *n,
			      struct policy_label_match *m)
{
	yaml_node_t *v = NULL;
	bool exists = false;
	int r;

	r = check_keys(c, n, exists_keys);
	if (!r)
		r = map_require(c, n, "exists", &v);
	if (!r)
		r = get_bool(c, v, "'exists'", &exists);
	if (r)
		return r;
	m->op = exists ? POLICY_LABEL_EXISTS : POLICY_LABEL_ABSENT;
	return 0;
}

/* key: [v1, v2, ...] */
static int parse_label_in(struct parse_ctx *c, const yaml_node_t *n, struct policy_label_match *m)
{
	size_t count = seq_len(n);
	const char *s;
	int r;

	if (!count)
		return fail(c, n, "label '%.160s': empty list of values", m->key);
	m->values = calloc(count, sizeof(*m->values));
	if (!m->values)
		return fail_nomem(c);
	m->n_values = count;
	for (size_t i = 0; i < count; i++) {
		r = get_label_text(c, seq_item(c, n, i), "label value", &s);
		if (!r)
			r = dup_string(c, s, &m->values[i]);
		if (r)
			return r;
	}
	m->op = POLICY_LABEL_IN;
	return 0;
}

static int parse_label(struct parse_ctx *c, const yaml_node_pair_t *p, struct policy_label_match *m)
{
	yaml_node_t *key = node_at(c, p->key), *v = node_at(c, p->value);
	const char *s;
	int r;

	r = get_label_text(c, key, "label key", &s);
	if (!r)
		r = dup_string(c, s, &m->key);
	if (r)
		return r;
	if (v->type == YAML_MAPPING_NODE)
		return parse_label_exists(c, v, m);
	if (v->type == YAML_SEQUENCE_NODE)
		return parse_label_in(c, v, m);
	if (is_null(v))
		return fail(
			c, v,
			"label '%.160s': expected a value, a list of values or {exists: BOOL}, got null",
			m->key);
	m->values = calloc(1, sizeof(*m->values));
	if (!m->values)
		return fail_nomem(c);
	m->n_values = 1;
	m->op = POLICY_LABEL_EQUALS;
	r = get_label_text(c, v, "label value", &s);
	return r ? r : dup_string(c, s, &m->values[0]);
}

static int parse_labels(struct parse_ctx *c, const yaml_node_t *n, struct policy_selector *sel)
{
	size_t count;
	int r;

	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "'labels': expected a mapping, got %s", kind(n));
	count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (!count)
		return fail(c, n, "'labels': empty mapping");
	if (count > POLICY_LABELS_MAX)
		return fail(c, n, "'labels': more than %d conditions", POLICY_LABELS_MAX);
	r = check_keys(c, n, NULL);
	if (r)
		return r;
	sel->labels = calloc(count, sizeof(*sel->labels));
	if (!sel->labels)
		return fail_nomem(c);
	sel->n_labels = count;
	for (size_t i = 0; i < count; i++) {
		r = parse_label(c, &n->data.mapping.pairs.start[i], &sel->labels[i]);
		if (r)
			return r;
	}
	return 0;
}

/* --- selectors ----------------------------------------------------------- */

static int parse_selector_id(struct parse_ctx *c, const yaml_node_t *n, struct policy_selector *sel,
			     struct spiffe_pattern *pat)
{
	char why[SPIFFE_WHY_MAX];
	const char *s;
	int r;

	r = get_string(c, n, "'spiffe_id'", &s);
	if (r)
		return r;
	if (spiffe_pattern_parse(s, pat, why, sizeof(why)))
		return fail(c, n, "invalid SPIFFE ID '%.160s': %s", s, why);
	return dup_string(c, s, &sel->spiffe_id);
}

static int parse_selector_td(struct parse_ctx *c, const yaml_node_t *n, struct policy_selector *sel)
{
	char why[SPIFFE_WHY_MAX];
	const char *s;
	int r;

	r = get_string(c, n, "'trust_domain'", &s);
	if (r)
		return r;
	if (spiffe_td_valid(s, why, sizeof(why)))
		return fail(c, n, "invalid trust domain '%.160s': %s", s, why);
	return dup_string(c, s, &sel->trust_domain);
}

/* A mapping of spiffe_id, trust_domain and labels, at least one of them. */
static int parse_selector(struct parse_ctx *c, const yaml_node_t *n, const char *what,
			  struct policy_selector *sel)
{
	yaml_node_t *id, *td, *labels;
	struct spiffe_pattern pat;
	int r;

	r = check_keys(c, n, selector_keys);
	if (r)
		return r;
	id = map_get(c, n, "spiffe_id");
	td = map_get(c, n, "trust_domain");
	labels = map_get(c, n, "labels");
	if (!id && !td && !labels)
		return fail(
			c, n,
			"'%s': empty selector (give spiffe_id, trust_domain or labels, or write 'any')",
			what);
	if (id && (r = parse_selector_id(c, id, sel, &pat)))
		return r;
	if (td && (r = parse_selector_td(c, td, sel)))
		return r;
	if (id && td && !spiffe_in_trust_domain(&pat.base, sel->trust_domain))
		return fail(
			c, n,
			"'%s': selector can never match: spiffe_id '%.160s' is not in trust domain '%.160s'",
			what, sel->spiffe_id, sel->trust_domain);
	return labels ? parse_labels(c, labels, sel) : 0;
}

/* One item of from/to: the keyword any, or a selector mapping. */
static int parse_peer(struct parse_ctx *c, const yaml_node_t *n, const char *what,
		      struct policy_peers *peers)
{
	/* Counted before parsing, so that a failure frees what was filled in. */
	if (n->type == YAML_MAPPING_NODE)
		return parse_selector(c, n, what, &peers->sel[peers->n_sel++]);
	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return fail(c, n, "'%s': expected 'any' or a selector mapping, got %s", what,
			    kind(n));
	if (strcmp(scalar(n), "any"))
		return fail(c, n, "'%s': expected 'any' or a selector mapping, got '%.160s'", what,
			    scalar(n));
	peers->any = true;
	return 0;
}

/* from/to: one peer or a list of them (OR). */
static int parse_peers(struct parse_ctx *c, const yaml_node_t *n, const char *what,
		       struct policy_peers *peers)
{
	bool list = n->type == YAML_SEQUENCE_NODE;
	size_t count = list ? seq_len(n) : 1;
	int r;

	if (list && !count)
		return fail(c, n, "'%s': empty list (write 'any' for any identity)", what);
	peers->sel = calloc(count, sizeof(*peers->sel));
	if (!peers->sel)
		return fail_nomem(c);
	if (!list)
		return parse_peer(c, n, what, peers);
	for (size_t i = 0; i < count; i++) {
		r = parse_peer(c, seq_item(c, n, i), what, peers);
		if (r)
			return r;
	}
	return 0;
}

/* --- ports, protocols, action, auth -------------------------------------- */

static int parse_port_number(struct parse_ctx *c, const yaml_node_t *n, const char *text,
			     __u16 *out)
{
	__u64 v;
	int r;

	r = parse_decimal(text, 65535, &v);
	if (r == -ERANGE || (!r && !v))
		return fail(c, n, "port %.160s out of range (1-65535)", text);
	if (r)
		return fail(
			c, n,
			"invalid port '%.160s' (expected a number 1-65535 or a range 'FIRST-LAST')",
			scalar(n));
	*out = (__u16)v;
	return 0;
}

/* 80, or "8000-8080" (quoted or not). */
static int parse_port(struct parse_ctx *c, const yaml_node_t *n, struct policy_port_range *range)
{
	char first[8], last[8];
	const char *text, *dash;
	int r;

	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return fail(c, n, "'ports': expected a number or a range 'FIRST-LAST', got %s",
			    kind(n));
	text = scalar(n);
	dash = strchr(text, '-');
	if (!dash) {
		if (!is_plain(n) && is_decimal(n))
			return fail(
				c, n,
				"port '%.160s' is quoted: write a number, or a range 'FIRST-LAST'",
				text);
		r = parse_port_number(c, n, text, &range->first);
		range->last = range->first;
		return r;
	}
	if ((size_t)(dash - text) >= sizeof(first) || strlen(dash + 1) >= sizeof(last))
		return fail(c, n, "invalid port range '%.160s'", text);
	snprintf(first, sizeof(first), "%.*s", (int)(dash - text), text);
	snprintf(last, sizeof(last), "%s", dash + 1);
	r = parse_port_number(c, n, first, &range->first);
	if (!r)
		r = parse_port_number(c, n, last, &range->last);
	if (r)
		return r;
	if (range->first > range->last)
		return fail(c, n, "port range '%.160s' is reversed", text);
	return 0;
}

static int parse_ports(struct parse_ctx *c, const yaml_node_t *n, struct policy_rule *rule)
{
	size_t count;
	int r;

	r = require_list(c, n, "ports");
	if (r)
		return r;
	count = seq_len(n);
	rule->ports = calloc(count, sizeof(*rule->ports));
	if (!rule->ports)
		return fail_nomem(c);
	rule->n_ports = count;
	for (size_t i = 0; i < count; i++) {
		r = parse_port(c, seq_item(c, n, i), &rule->ports[i]);
		if (r)
			return r;
	}
	return 0;
}

static int parse_protocols(struct parse_ctx *c, const yaml_node_t *n, struct policy_rule *rule)
{
	unsigned int mask = 0, bit;
	const char *s;
	int r;

	r = require_list(c, n, "protocols");
	for (size_t i = 0; !r && i < seq_len(n); i++) {
		yaml_node_t *item = seq_item(c, n, i);

		r = get_string(c, item, "'protocols'", &s);
		if (r)
			return r;
		if (!strcmp(s, "tcp"))
			bit = POLICY_PROTO_TCP;
		else if (!strcmp(s, "udp"))
			bit = POLICY_PROTO_UDP;
		else
			return fail(c, item, "unknown protocol '%.160s' (expected tcp or udp)", s);
		if (mask & bit)
			return fail(c, item, "protocol '%s' listed twice", s);
		mask |= bit;
	}
	if (!r)
		rule->protocols = mask;
	return r;
}

/* A string that must be one of two words; *out is 0 for the first, 1 for the second. */
static int parse_choice(struct parse_ctx *c, const yaml_node_t *n, const char *what, const char *w0,
			const char *w1, int *out)
{
	const char *s;
	int r;

	r = get_string(c, n, what, &s);
	if (r)
		return r;
	if (strcmp(s, w0) && strcmp(s, w1))
		return fail(c, n, "%s: unknown value '%.160s' (expected %s or %s)", what, s, w0,
			    w1);
	*out = !!strcmp(s, w0);
	return 0;
}

/* --- rules and the document ---------------------------------------------- */

static size_t name_hash(const char *s)
{
	__u64 h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return (size_t)h;
}

/* The slot of the rule named s, or the empty slot where s belongs. */
static size_t name_slot(const struct parse_ctx *c, const struct policy_doc *doc, const char *s)
{
	size_t mask = c->n_names - 1, i = name_hash(s) & mask;

	while (c->names[i] && strcmp(doc->rules[c->names[i] - 1].name, s))
		i = (i + 1) & mask;
	return i;
}

static int parse_rule_name(struct parse_ctx *c, const yaml_node_t *n, const struct policy_doc *doc,
			   size_t idx)
{
	struct policy_rule *rule = &doc->rules[idx];
	yaml_node_t *v = NULL;
	const char *s;
	size_t slot;
	int r;

	r = map_require(c, n, "name", &v);
	if (!r)
		r = get_string(c, v, "'name'", &s);
	if (r)
		return r;
	if (!*s)
		return fail(c, v, "'name': empty");
	if (strlen(s) > POLICY_NAME_MAX)
		return fail(c, v, "'name': longer than %d bytes", POLICY_NAME_MAX);
	slot = name_slot(c, doc, s);
	if (c->names[slot])
		return fail(c, v,
			    "duplicate rule name '%.160s' (first used by the rule at line %u)", s,
			    doc->rules[c->names[slot] - 1].line);
	r = dup_string(c, s, &rule->name);
	if (r)
		return r;
	c->names[slot] = idx + 1;
	c->rule_name = rule->name;
	return 0;
}

static int parse_transport(struct parse_ctx *c, const yaml_node_t *n, enum policy_transport *out)
{
	int choice = 0;
	int r = parse_choice(c, n, "'transport'", "encrypted", "authenticated", &choice);

	if (!r)
		*out = choice ? POLICY_TRANSPORT_AUTHENTICATED : POLICY_TRANSPORT_ENCRYPTED;
	return r;
}

static int parse_rule_fields(struct parse_ctx *c, const yaml_node_t *n, struct policy_rule *rule)
{
	yaml_node_t *v = NULL;
	int r, choice = 0;

	r = map_require(c, n, "action", &v);
	if (!r)
		r = parse_choice(c, v, "'action'", "allow", "deny", &choice);
	if (r)
		return r;
	rule->action = choice ? POLICY_DENY : POLICY_ALLOW;
	r = map_require(c, n, "from", &v);
	if (!r)
		r = parse_peers(c, v, "from", &rule->from);
	if (!r)
		r = map_require(c, n, "to", &v);
	if (!r)
		r = parse_peers(c, v, "to", &rule->to);
	if (!r && (v = map_get(c, n, "ports")))
		r = parse_ports(c, v, rule);
	rule->protocols = POLICY_PROTO_ALL;
	if (!r && (v = map_get(c, n, "protocols")))
		r = parse_protocols(c, v, rule);
	if (!r && (v = map_get(c, n, "auth")))
		r = parse_choice(c, v, "'auth'", "none", "required", &choice);
	if (!r && v)
		rule->auth = choice ? POLICY_AUTH_REQUIRED : POLICY_AUTH_NONE;
	/* A deny is never authenticated into an allow: say so rather than ignore it. */
	if (!r && rule->action == POLICY_DENY && rule->auth == POLICY_AUTH_REQUIRED)
		r = fail(c, v, "'auth': a deny rule cannot require authentication");
	if (!r && (v = map_get(c, n, "transport")))
		r = parse_transport(c, v, &rule->transport);
	if (!r && v && rule->action == POLICY_DENY)
		r = fail(c, v, "'transport': a deny rule carries nothing");
	return r;
}

static int parse_rule(struct parse_ctx *c, const yaml_node_t *n, struct policy_doc *doc, size_t idx)
{
	struct policy_rule *rule = &doc->rules[idx];
	int r;

	c->rule_no = idx + 1;
	c->rule_name = NULL;
	rule->line = (unsigned int)n->start_mark.line + 1;
	rule->column = (unsigned int)n->start_mark.column + 1;
	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "expected a mapping, got %s", kind(n));
	/* The name first, so that every later message can carry it. */
	r = parse_rule_name(c, n, doc, idx);
	if (!r)
		r = check_keys(c, n, rule_keys);
	if (!r)
		r = parse_rule_fields(c, n, rule);
	return r;
}

static int parse_version(struct parse_ctx *c, const yaml_node_t *n, __u64 *out)
{
	__u64 v = 0;
	int r = -EINVAL;

	if (is_plain(n))
		r = parse_decimal(scalar(n), UINT64_MAX, &v);
	if (r == -ERANGE)
		return fail(c, n, "'version': too large");
	if (r && n->type == YAML_SCALAR_NODE && !is_null(n))
		return fail(c, n, "'version': expected a positive integer, got '%.160s'",
			    scalar(n));
	if (r)
		return fail(c, n, "'version': expected a positive integer, got %s", kind(n));
	if (!v)
		return fail(c, n, "'version': must be positive, got 0");
	*out = v;
	return 0;
}

static int parse_root(struct parse_ctx *c, const yaml_node_t *n, struct policy_doc *doc)
{
	yaml_node_t *version = NULL, *rules = NULL, *transport;
	int r;

	if (n->type != YAML_MAPPING_NODE)
		return fail(c, n, "expected a mapping of 'version' and 'rules', got %s", kind(n));
	r = check_keys(c, n, doc_keys);
	if (!r)
		r = map_require(c, n, "version", &version);
	if (!r)
		r = parse_version(c, version, &doc->version);
	if (!r && (transport = map_get(c, n, "transport")))
		r = parse_transport(c, transport, &doc->transport);
	if (!r)
		r = map_require(c, n, "rules", &rules);
	if (!r)
		r = require_list(c, rules, "rules");
	if (r)
		return r;
	doc->rules = calloc(seq_len(rules), sizeof(*doc->rules));
	if (!doc->rules)
		return fail_nomem(c);
	doc->n_rules = seq_len(rules);
	for (c->n_names = 16; c->n_names < 2 * doc->n_rules;)
		c->n_names *= 2;
	c->names = calloc(c->n_names, sizeof(*c->names));
	if (!c->names)
		return fail_nomem(c);
	for (size_t i = 0; i < doc->n_rules; i++) {
		r = parse_rule(c, seq_item(c, rules, i), doc, i);
		if (r)
			return r;
	}
	return 0;
}

/* --- entry points -------------------------------------------------------- */

static int fail_yaml(struct parse_ctx *c, const yaml_parser_t *p)
{
	const yaml_mark_t *m = &p->problem_mark;

	if (p->error == YAML_MEMORY_ERROR)
		return fail_nomem(c);
	snprintf(c->err->msg, sizeof(c->err->msg), "%s:%zu:%zu: YAML syntax error: %s%s%s", c->name,
		 m->line + 1, m->column + 1, p->problem ? p->problem : "unknown problem",
		 p->context ? " " : "", p->context ? p->context : "");
	return -EINVAL;
}

static int mark_used(struct parse_ctx *c, unsigned char *used, int id)
{
	if (used[id])
		return fail(
			c, node_at(c, id),
			"YAML anchors and aliases are not supported (this node is repeated by an alias)");
	used[id] = 1;
	return 0;
}

/* Marks the children of n as used. */
static int mark_children(struct parse_ctx *c, unsigned char *used, const yaml_node_t *n)
{
	int r = 0;

	if (n->type == YAML_SEQUENCE_NODE)
		for (size_t i = 0; !r && i < seq_len(n); i++)
			r = mark_used(c, used, n->data.sequence.items.start[i]);
	if (n->type != YAML_MAPPING_NODE)
		return r;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; !r && p < n->data.mapping.pairs.top;
	     p++) {
		r = mark_used(c, used, p->key);
		if (!r)
			r = mark_used(c, used, p->value);
	}
	return r;
}

/*
 * libyaml turns an alias into one more reference to the anchored node, so a
 * few bytes of aliases could make the walk visit a large node many times
 * (or loop through a node that contains itself). A policy has no use for
 * them: every node may be referenced once, the root (node 1) not at all.
 */
static int check_no_aliases(struct parse_ctx *c)
{
	size_t count = (size_t)(c->ydoc->nodes.top - c->ydoc->nodes.start);
	_cleanup_free_ unsigned char *used = NULL;
	int r;

	used = calloc(count + 1, 1);
	if (!used)
		return fail_nomem(c);
	r = mark_used(c, used, 1);
	for (size_t i = 0; !r && i < count; i++)
		r = mark_children(c, used, &c->ydoc->nodes.start[i]);
	return r;
}

static void cleanup_yaml_doc(yaml_document_t **d)
{
	if (*d)
		yaml_document_delete(*d);
}

/* Loads the one document of the stream into ydoc; a second one is an error. */
static int load_document(struct parse_ctx *c, yaml_parser_t *p, yaml_document_t *ydoc)
{
	yaml_document_t next;
	yaml_node_t *root;
	int r = 0;

	if (!yaml_parser_load(p, ydoc))
		return fail_yaml(c, p);
	if (!yaml_document_get_root_node(ydoc)) {
		yaml_document_delete(ydoc);
		snprintf(c->err->msg, sizeof(c->err->msg), "%s:1:1: empty document", c->name);
		return -EINVAL;
	}
	/* At the end of the stream, libyaml returns a document without nodes. */
	if (!yaml_parser_load(p, &next)) {
		yaml_document_delete(ydoc);
		return fail_yaml(c, p);
	}
	root = yaml_document_get_root_node(&next);
	if (root)
		r = fail(c, root, "more than one YAML document (one policy per file)");
	yaml_document_delete(&next);
	if (r)
		yaml_document_delete(ydoc);
	return r;
}

int policy_parse_buffer(const char *name, const char *buf, size_t len, struct policy_doc **doc,
			struct policy_error *err)
{
	struct parse_ctx c = {.name = name ? name : "<policy>", .err = err};
	__attribute__((cleanup(cleanup_yaml_doc))) yaml_document_t *loaded = NULL;
	_cleanup_policy_doc_ struct policy_doc *d = NULL;
	yaml_document_t ydoc;
	yaml_parser_t parser;
	int r;

	if (!yaml_parser_initialize(&parser))
		return fail_nomem(&c);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	r = load_document(&c, &parser, &ydoc);
	yaml_parser_delete(&parser);
	if (r)
		return r;
	loaded = &ydoc;
	c.ydoc = &ydoc;
	r = check_no_aliases(&c);
	if (r)
		return r;
	d = calloc(1, sizeof(*d));
	if (!d)
		return fail_nomem(&c);
	r = parse_root(&c, yaml_document_get_root_node(&ydoc), d);
	free(c.names);
	if (r)
		return r;
	*doc = take_ptr(d);
	return 0;
}

static int fail_io(const char *path, int r, struct policy_error *err)
{
	snprintf(err->msg, sizeof(err->msg), "%s: cannot read: %s", path, strerror(-r));
	return r;
}

/* Reads a whole file (or pipe) of at most POLICY_FILE_MAX bytes. */
static int read_file(const char *path, char **buf, size_t *len, struct policy_error *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *data = NULL;
	size_t used = 0;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_io(path, -errno, err);
	/* Pages of the buffer are only touched as far as the file goes. */
	data = malloc(POLICY_FILE_MAX + 1);
	if (!data)
		return fail_io(path, -ENOMEM, err);
	while (used <= POLICY_FILE_MAX) {
		n = read(fd, data + used, POLICY_FILE_MAX + 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail_io(path, -errno, err);
		if (!n)
			break;
		used += (size_t)n;
	}
	if (used > POLICY_FILE_MAX) {
		snprintf(err->msg, sizeof(err->msg), "%s: larger than %d bytes", path,
			 POLICY_FILE_MAX);
		return -EFBIG;
	}
	*buf = take_ptr(data);
	*len = used;
	return 0;
}

int policy_parse_file(const char *path, struct policy_doc **doc, struct policy_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_file(path, &buf, &len, err);
	if (r)
		return r;
	return policy_parse_buffer(path, buf, len, doc, err);
}

static void selector_free(struct policy_selector *sel)
{
	free(sel->spiffe_id);
	free(sel->trust_domain);
	for (size_t i = 0; i < sel->n_labels; i++) {
		struct policy_label_match *m = &sel->labels[i];

		for (size_t j = 0; j < m->n_values; j++)
			free(m->values[j]);
		free(m->values);
		free(m->key);
	}
	free(sel->labels);
}

static void peers_free(struct policy_peers *peers)
{
	for (size_t i = 0; i < peers->n_sel; i++)
		selector_free(&peers->sel[i]);
	free(peers->sel);
}

void policy_doc_free(struct policy_doc *doc)
{
	if (!doc)
		return;
	for (size_t i = 0; i < doc->n_rules; i++) {
		struct policy_rule *rule = &doc->rules[i];

		free(rule->name);
		peers_free(&rule->from);
		peers_free(&rule->to);
		free(rule->ports);
	}
	free(doc->rules);
	free(doc);
}

const char *policy_action_name(enum policy_action action)
{
	return action == POLICY_DENY ? "deny" : "allow";
}

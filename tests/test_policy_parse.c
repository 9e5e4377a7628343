// SPDX-License-Identifier: Apache-2.0
/*
 * Tests of agent/policy_parse.c: valid documents (YAML, and the same
 * document in JSON parsed to the same result), a table of invalid documents
 * each with the exact message it must produce (file, line, column, rule and
 * cause), and every file of docs/examples/, so that the examples stay valid.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "policy_parse.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct policy_doc *parse_ok(const char *text)
{
	struct policy_doc *doc = NULL;
	struct policy_error err = {};
	int r;

	r = policy_parse_buffer("t.yaml", text, strlen(text), &doc, &err);
	cr_assert_eq(r, 0, "parse failed (%d): %s", r, err.msg);
	cr_assert_not_null(doc);
	return doc;
}

/* ---------------------------------------------------------------- valid */

static const char full_yaml[] = "# a comment\n"
				"version: 7\n"
				"rules:\n"
				"  - name: web-to-api\n"
				"    action: allow\n"
				"    from: {spiffe_id: \"spiffe://prod.example/ns/web/*\"}\n"
				"    to:\n"
				"      - spiffe_id: spiffe://prod.example/ns/api\n"
				"      - trust_domain: partner.example\n"
				"        labels:\n"
				"          env: prod\n"
				"          tier: [gold, silver]\n"
				"          canary: {exists: false}\n"
				"          team: {exists: true}\n"
				"    ports: [443, 8000-8080, \"9000-9001\"]\n"
				"    protocols: [tcp]\n"
				"    auth: required\n"
				"  - name: block-debug\n"
				"    action: deny\n"
				"    from: any\n"
				"    to: [any]\n"
				"    protocols: [udp, tcp]\n"
				"    auth: none\n";

static const char full_json[] =
	"{\n"
	"  \"version\": 7,\n"
	"  \"rules\": [\n"
	"    {\"name\": \"web-to-api\", \"action\": \"allow\",\n"
	"     \"from\": {\"spiffe_id\": \"spiffe://prod.example/ns/web/*\"},\n"
	"     \"to\": [{\"spiffe_id\": \"spiffe://prod.example/ns/api\"},\n"
	"\t    {\"trust_domain\": \"partner.example\",\n"
	"\t     \"labels\": {\"env\": \"prod\", \"tier\": [\"gold\", \"silver\"],\n"
	"\t                \"canary\": {\"exists\": false}, \"team\": {\"exists\":true}}}],\n"
	"     \"ports\": [443, \"8000-8080\", \"9000-9001\"],\n"
	"     \"protocols\": [\"tcp\"], \"auth\": \"required\"},\n"
	"    {\"name\":\"block-debug\",\"action\":\"deny\",\"from\":\"any\",\"to\":[\"any\"],\n"
	"     \"protocols\":[\"udp\",\"tcp\"],\"auth\":\"none\"}\n"
	"  ]\n"
	"}\n";

static void assert_label(const struct policy_label_match *m, const char *key,
			 enum policy_label_op op, size_t n_values, const char *v0, const char *v1)
{
	cr_assert_str_eq(m->key, key);
	cr_assert_eq(m->op, op, "label '%s': op %d, expected %d", key, m->op, op);
	cr_assert_eq(m->n_values, n_values, "label '%s'", key);
	if (v0)
		cr_assert_str_eq(m->values[0], v0);
	if (v1)
		cr_assert_str_eq(m->values[1], v1);
}

/* What full_yaml and full_json both say. */
static void assert_full_doc(const struct policy_doc *doc)
{
	const struct policy_rule *a = &doc->rules[0], *b = &doc->rules[1];
	const struct policy_selector *partner;

	cr_assert_eq(doc->version, 7);
	cr_assert_eq(doc->n_rules, 2);
	cr_assert_str_eq(a->name, "web-to-api");
	cr_assert_eq(a->action, POLICY_ALLOW);
	cr_assert_not(a->from.any);
	cr_assert_eq(a->from.n_sel, 1);
	cr_assert_str_eq(a->from.sel[0].spiffe_id, "spiffe://prod.example/ns/web/*");
	cr_assert_null(a->from.sel[0].trust_domain);
	cr_assert_eq(a->to.n_sel, 2);
	cr_assert_str_eq(a->to.sel[0].spiffe_id, "spiffe://prod.example/ns/api");
	partner = &a->to.sel[1];
	cr_assert_null(partner->spiffe_id);
	cr_assert_str_eq(partner->trust_domain, "partner.example");
	cr_assert_eq(partner->n_labels, 4);
	assert_label(&partner->labels[0], "env", POLICY_LABEL_EQUALS, 1, "prod", NULL);
	assert_label(&partner->labels[1], "tier", POLICY_LABEL_IN, 2, "gold", "silver");
	assert_label(&partner->labels[2], "canary", POLICY_LABEL_ABSENT, 0, NULL, NULL);
	assert_label(&partner->labels[3], "team", POLICY_LABEL_EXISTS, 0, NULL, NULL);
	cr_assert_eq(a->n_ports, 3);
	cr_assert(a->ports[0].first == 443 && a->ports[0].last == 443);
	cr_assert(a->ports[1].first == 8000 && a->ports[1].last == 8080);
	cr_assert(a->ports[2].first == 9000 && a->ports[2].last == 9001);
	cr_assert_eq(a->protocols, POLICY_PROTO_TCP);
	cr_assert_eq(a->auth, POLICY_AUTH_REQUIRED);

	cr_assert_str_eq(b->name, "block-debug");
	cr_assert_eq(b->action, POLICY_DENY);
	cr_assert(b->from.any);
	cr_assert(b->to.any);
	cr_assert_eq(b->n_ports, 0);
	cr_assert_eq(b->protocols, POLICY_PROTO_ALL);
	cr_assert_eq(b->auth, POLICY_AUTH_NONE);
}

Test(policy_parse, full_yaml_document)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse_ok(full_yaml);

	assert_full_doc(doc);
	/* Positions of rules, for messages of the compiler. */
	cr_assert_eq(doc->rules[0].line, 4);
	cr_assert_eq(doc->rules[0].column, 5);
	cr_assert_eq(doc->rules[1].line, 18);
}

Test(policy_parse, same_document_in_json)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse_ok(full_json);

	assert_full_doc(doc);
	cr_assert_eq(doc->rules[0].line, 4);
}

Test(policy_parse, defaults_and_short_forms)
{
	_cleanup_policy_doc_ struct policy_doc *doc = parse_ok("version: 1\n"
							       "rules:\n"
							       "- name: r\n"
							       "  action: allow\n"
							       "  from: {trust_domain: td}\n"
							       "  to: {labels: {app: db}}\n");
	const struct policy_rule *r = &doc->rules[0];

	cr_assert_eq(r->n_ports, 0, "no ports means all ports");
	cr_assert_eq(r->protocols, POLICY_PROTO_ALL);
	cr_assert_eq(r->auth, POLICY_AUTH_NONE);
	cr_assert_eq(r->from.n_sel, 1);
	cr_assert_str_eq(r->from.sel[0].trust_domain, "td");
	cr_assert_eq(r->to.n_sel, 1);
	assert_label(&r->to.sel[0].labels[0], "app", POLICY_LABEL_EQUALS, 1, "db", NULL);
}

Test(policy_parse, any_in_a_list_means_any)
{
	_cleanup_policy_doc_ struct policy_doc *doc =
		parse_ok("version: 2\n"
			 "rules:\n"
			 "- {name: r, action: deny, from: [{trust_domain: a}, any], to: any}\n");

	cr_assert(doc->rules[0].from.any);
	cr_assert_eq(doc->rules[0].from.n_sel, 1, "the selector is kept, any decides");
}

Test(policy_parse, scalars_are_text_where_text_belongs)
{
	/* Plain 1, true and NO stay the strings they are written as. */
	_cleanup_policy_doc_ struct policy_doc *doc =
		parse_ok("version: 18446744073709551615\n"
			 "rules:\n"
			 "- {name: 42, action: allow, from: any,\n"
			 "   to: {labels: {shard: 1, enabled: true, country: NO}}}\n");
	const struct policy_selector *s = &doc->rules[0].to.sel[0];

	cr_assert_eq(doc->version, 18446744073709551615ULL);
	cr_assert_str_eq(doc->rules[0].name, "42");
	assert_label(&s->labels[0], "shard", POLICY_LABEL_EQUALS, 1, "1", NULL);
	assert_label(&s->labels[1], "enabled", POLICY_LABEL_EQUALS, 1, "true", NULL);
	assert_label(&s->labels[2], "country", POLICY_LABEL_EQUALS, 1, "NO", NULL);
}

Test(policy_parse, overlapping_ports_are_kept_as_written)
{
	_cleanup_policy_doc_ struct policy_doc *doc =
		parse_ok("version: 1\n"
			 "rules:\n"
			 "- {name: r, action: allow, from: any, to: any,\n"
			 "   ports: [1-65535, 65535, 1], protocols: [udp]}\n");
	const struct policy_rule *r = &doc->rules[0];

	cr_assert_eq(r->n_ports, 3);
	cr_assert(r->ports[0].first == 1 && r->ports[0].last == 65535);
	cr_assert(r->ports[1].first == 65535 && r->ports[1].last == 65535);
	cr_assert(r->ports[2].first == 1 && r->ports[2].last == 1);
	cr_assert_eq(r->protocols, POLICY_PROTO_UDP);
}

/* -------------------------------------------------------------- invalid */

struct bad_doc {
	const char *what;
	const char *text;
	const char *msg; /* the whole message, or its start when prefix */
	bool prefix;	 /* the rest comes from spiffe.c's own wording */
};

#define RULE_HEAD "version: 1\nrules:\n- name: r\n  action: allow\n"

static const struct bad_doc bad_docs[] = {
	{"YAML syntax", "version: 1\nrules: [\n",
	 "t.yaml:3:1: YAML syntax error: did not find expected node content while parsing a flow node"},
	{"empty", "# nothing\n", "t.yaml:1:1: empty document"},
	{"two documents", "version: 1\n---\nversion: 2\n",
	 "t.yaml:3:1: more than one YAML document (one policy per file)"},
	{"alias of a rule",
	 "version: 1\nrules:\n- &r {name: a, action: allow, from: any, to: any}\n- *r\n",
	 "t.yaml:3:3: YAML anchors and aliases are not supported (this node is repeated by an alias)"},
	{"alias of labels", RULE_HEAD "  from: {labels: &l {app: x}}\n  to: {labels: *l}\n",
	 "t.yaml:5:18: YAML anchors and aliases are not supported (this node is repeated by an alias)"},
	{"node containing itself", "&a [*a]\n",
	 "t.yaml:1:1: YAML anchors and aliases are not supported (this node is repeated by an alias)"},
	{"not a mapping", "- a\n- b\n",
	 "t.yaml:1:1: expected a mapping of 'version' and 'rules', got a list"},
	{"unknown top key", "version: 1\nrule: []\n",
	 "t.yaml:2:1: unknown key 'rule' (expected version, transport, rules)"},
	{"duplicate top key", "version: 1\nversion: 2\nrules: []\n",
	 "t.yaml:2:1: duplicate key 'version' (first at line 1)"},
	{"no version", "rules: []\n", "t.yaml:1:1: missing 'version'"},
	{"version 0", "version: 0\nrules: []\n", "t.yaml:1:10: 'version': must be positive, got 0"},
	{"negative version", "version: -1\nrules: []\n",
	 "t.yaml:1:10: 'version': expected a positive integer, got '-1'"},
	{"quoted version", "version: \"3\"\nrules: []\n",
	 "t.yaml:1:10: 'version': expected a positive integer, got '3'"},
	{"version too large", "version: 18446744073709551616\nrules: []\n",
	 "t.yaml:1:10: 'version': too large"},
	{"version a list", "version: [1]\nrules: []\n",
	 "t.yaml:1:10: 'version': expected a positive integer, got a list"},
	{"no rules", "version: 1\n", "t.yaml:1:1: missing 'rules'"},
	{"empty rules", "version: 1\nrules: []\n", "t.yaml:2:8: 'rules': empty list"},
	{"rules a mapping", "version: 1\nrules: {a: 1}\n",
	 "t.yaml:2:8: 'rules': expected a list, got a mapping"},
	{"rule a scalar", "version: 1\nrules: [x]\n",
	 "t.yaml:2:9: rule #1: expected a mapping, got a scalar"},
	{"missing name",
	 RULE_HEAD "  from: any\n  to: any\n- action: deny\n  from: any\n  to: any\n",
	 "t.yaml:7:3: rule #2: missing 'name'"},
	{"null name", "version: 1\nrules:\n- name:\n  action: allow\n",
	 "t.yaml:3:8: rule #1: 'name': expected a string, got null"},
	{"empty name", "version: 1\nrules:\n- name: ''\n", "t.yaml:3:9: rule #1: 'name': empty"},
	{"NUL in name", "version: 1\nrules:\n- name: \"a\\0b\"\n",
	 "t.yaml:3:9: rule #1: 'name': contains a NUL byte"},
	{"control byte in name", "version: 1\nrules:\n- name: \"a\\tb\"\n",
	 "t.yaml:3:9: rule #1: 'name': contains control character 0x09"},
	{"duplicate name", RULE_HEAD "  from: any\n  to: any\n- name: r\n  action: deny\n",
	 "t.yaml:7:9: rule #2: duplicate rule name 'r' (first used by the rule at line 3)"},
	{"unknown rule key", RULE_HEAD "  from: any\n  to: any\n  prots: [80]\n",
	 "t.yaml:7:3: rule 'r': unknown key 'prots' (expected name, action, from, to, ports, protocols, auth, transport)"},
	{"duplicate rule key", RULE_HEAD "  action: deny\n  from: any\n  to: any\n",
	 "t.yaml:5:3: rule 'r': duplicate key 'action' (first at line 4)"},
	{"name after an error", "version: 1\nrules:\n- action: permit\n  name: late\n",
	 "t.yaml:3:11: rule 'late': 'action': unknown value 'permit' (expected allow or deny)"},
	{"missing action", "version: 1\nrules:\n- name: r\n  from: any\n  to: any\n",
	 "t.yaml:3:3: rule 'r': missing 'action'"},
	{"missing from", RULE_HEAD "  to: any\n", "t.yaml:3:3: rule 'r': missing 'from'"},
	{"missing to", RULE_HEAD "  from: any\n", "t.yaml:3:3: rule 'r': missing 'to'"},
	{"from empty list", RULE_HEAD "  from: []\n  to: any\n",
	 "t.yaml:5:9: rule 'r': 'from': empty list (write 'any' for any identity)"},
	{"from a word", RULE_HEAD "  from: anyone\n  to: any\n",
	 "t.yaml:5:9: rule 'r': 'from': expected 'any' or a selector mapping, got 'anyone'"},
	{"to a nested list", RULE_HEAD "  from: any\n  to: [[any]]\n",
	 "t.yaml:6:8: rule 'r': 'to': expected 'any' or a selector mapping, got a list"},
	{"to null", RULE_HEAD "  from: any\n  to:\n",
	 "t.yaml:6:6: rule 'r': 'to': expected 'any' or a selector mapping, got null"},
	{"empty selector", RULE_HEAD "  from: {}\n  to: any\n",
	 "t.yaml:5:9: rule 'r': 'from': empty selector (give spiffe_id, trust_domain or labels, or write 'any')"},
	{"unknown selector key", RULE_HEAD "  from: any\n  to: {spiffe: spiffe://td/a}\n",
	 "t.yaml:6:8: rule 'r': unknown key 'spiffe' (expected spiffe_id, trust_domain, labels)"},
	{"bad SPIFFE ID", RULE_HEAD "  from: {spiffe_id: spiffe://TD/web}\n  to: any\n",
	 "t.yaml:5:21: rule 'r': invalid SPIFFE ID 'spiffe://TD/web': ", true},
	{"bad pattern", RULE_HEAD "  from: any\n  to: {spiffe_id: 'spiffe://td/web*'}\n",
	 "t.yaml:6:19: rule 'r': invalid SPIFFE ID 'spiffe://td/web*': ", true},
	{"not a SPIFFE URI", RULE_HEAD "  from: any\n  to: {spiffe_id: https://td/web}\n",
	 "t.yaml:6:19: rule 'r': invalid SPIFFE ID 'https://td/web': ", true},
	{"bad trust domain", RULE_HEAD "  from: {trust_domain: spiffe://td}\n  to: any\n",
	 "t.yaml:5:24: rule 'r': invalid trust domain 'spiffe://td': ", true},
	{"ID outside its trust domain",
	 RULE_HEAD "  from: {spiffe_id: spiffe://a/x, trust_domain: b}\n  to: any\n",
	 "t.yaml:5:9: rule 'r': 'from': selector can never match: spiffe_id 'spiffe://a/x' is not in trust domain 'b'"},
	{"labels a list", RULE_HEAD "  from: {labels: [a]}\n  to: any\n",
	 "t.yaml:5:18: rule 'r': 'labels': expected a mapping, got a list"},
	{"empty labels", RULE_HEAD "  from: {labels: {}}\n  to: any\n",
	 "t.yaml:5:18: rule 'r': 'labels': empty mapping"},
	{"null label value", RULE_HEAD "  from: {labels: {app: ~}}\n  to: any\n",
	 "t.yaml:5:24: rule 'r': label 'app': expected a value, a list of values or {exists: BOOL}, got null"},
	{"empty label set", RULE_HEAD "  from: {labels: {app: []}}\n  to: any\n",
	 "t.yaml:5:24: rule 'r': label 'app': empty list of values"},
	{"exists not a bool", RULE_HEAD "  from: {labels: {app: {exists: yes}}}\n  to: any\n",
	 "t.yaml:5:33: rule 'r': 'exists': expected true or false, got 'yes'"},
	{"exists quoted", RULE_HEAD "  from: {labels: {app: {exists: \"true\"}}}\n  to: any\n",
	 "t.yaml:5:33: rule 'r': 'exists': expected true or false, got 'true'"},
	{"label operator", RULE_HEAD "  from: {labels: {app: {in: [a]}}}\n  to: any\n",
	 "t.yaml:5:25: rule 'r': unknown key 'in' (expected exists)"},
	{"duplicate label", RULE_HEAD "  from: {labels: {app: a, app: b}}\n  to: any\n",
	 "t.yaml:5:27: rule 'r': duplicate key 'app' (first at line 5)"},
	{"ports not a list", RULE_HEAD "  from: any\n  to: any\n  ports: 80\n",
	 "t.yaml:7:10: rule 'r': 'ports': expected a list, got a scalar"},
	{"empty ports", RULE_HEAD "  from: any\n  to: any\n  ports: []\n",
	 "t.yaml:7:10: rule 'r': 'ports': empty list"},
	{"port 0", RULE_HEAD "  from: any\n  to: any\n  ports: [80, 0]\n",
	 "t.yaml:7:15: rule 'r': port 0 out of range (1-65535)"},
	{"port 65536", RULE_HEAD "  from: any\n  to: any\n  ports: [65536]\n",
	 "t.yaml:7:11: rule 'r': port 65536 out of range (1-65535)"},
	{"range to 65536", RULE_HEAD "  from: any\n  to: any\n  ports: [1-65536]\n",
	 "t.yaml:7:11: rule 'r': port 65536 out of range (1-65535)"},
	{"range from 0", RULE_HEAD "  from: any\n  to: any\n  ports: [\"0-80\"]\n",
	 "t.yaml:7:11: rule 'r': port 0 out of range (1-65535)"},
	{"reversed range", RULE_HEAD "  from: any\n  to: any\n  ports: [8080-8000]\n",
	 "t.yaml:7:11: rule 'r': port range '8080-8000' is reversed"},
	{"quoted port", RULE_HEAD "  from: any\n  to: any\n  ports: [\"80\"]\n",
	 "t.yaml:7:11: rule 'r': port '80' is quoted: write a number, or a range 'FIRST-LAST'"},
	{"port a word", RULE_HEAD "  from: any\n  to: any\n  ports: [http]\n",
	 "t.yaml:7:11: rule 'r': invalid port 'http' (expected a number 1-65535 or a range 'FIRST-LAST')"},
	{"half a range", RULE_HEAD "  from: any\n  to: any\n  ports: [80-]\n",
	 "t.yaml:7:11: rule 'r': invalid port '80-' (expected a number 1-65535 or a range 'FIRST-LAST')"},
	{"port with leading zero", RULE_HEAD "  from: any\n  to: any\n  ports: [080]\n",
	 "t.yaml:7:11: rule 'r': invalid port '080' (expected a number 1-65535 or a range 'FIRST-LAST')"},
	{"port a mapping", RULE_HEAD "  from: any\n  to: any\n  ports: [{from: 1}]\n",
	 "t.yaml:7:11: rule 'r': 'ports': expected a number or a range 'FIRST-LAST', got a mapping"},
	{"unknown protocol", RULE_HEAD "  from: any\n  to: any\n  protocols: [tcp, icmp]\n",
	 "t.yaml:7:20: rule 'r': unknown protocol 'icmp' (expected tcp or udp)"},
	{"protocol twice", RULE_HEAD "  from: any\n  to: any\n  protocols: [udp, udp]\n",
	 "t.yaml:7:20: rule 'r': protocol 'udp' listed twice"},
	{"protocols a word", RULE_HEAD "  from: any\n  to: any\n  protocols: tcp\n",
	 "t.yaml:7:14: rule 'r': 'protocols': expected a list, got a scalar"},
	{"unknown auth", RULE_HEAD "  from: any\n  to: any\n  auth: mtls\n",
	 "t.yaml:7:9: rule 'r': 'auth': unknown value 'mtls' (expected none or required)"},
	{"auth on a deny",
	 "version: 1\nrules:\n- {name: d, action: deny, from: any, to: any, auth: required}\n",
	 "t.yaml:3:53: rule 'd': 'auth': a deny rule cannot require authentication"},
	{"unknown transport", RULE_HEAD "  from: any\n  to: any\n  transport: plain\n",
	 "t.yaml:7:14: rule 'r': 'transport': unknown value 'plain' (expected encrypted or "
	 "authenticated)"},
	{"transport on a deny",
	 "version: 1\nrules:\n- {name: d, action: deny, from: any, to: any, transport: encrypted}\n",
	 "t.yaml:3:58: rule 'd': 'transport': a deny rule carries nothing"},
	{"document transport a list", "version: 1\ntransport: [encrypted]\nrules:\n"
	 "- {name: r, action: allow, from: any, to: any}\n",
	 "t.yaml:2:12: 'transport': expected a string, got a list"},
	{"JSON error position",
	 "{\"version\": 1, \"rules\": [\n  {\"name\": \"j\", \"action\": \"allow\", \"from\": \"any\",\n   \"to\": \"any\", \"ports\": [443, 0]}]}\n",
	 "t.yaml:3:32: rule 'j': port 0 out of range (1-65535)"},
};

Test(policy_parse, transport_of_rules_and_document)
{
	static const char text[] = "version: 2\n"
				   "transport: authenticated\n"
				   "rules:\n"
				   "- {name: a, action: allow, from: any, to: any}\n"
				   "- {name: e, action: allow, from: any, to: any, transport: encrypted}\n"
				   "- {name: p, action: allow, from: any, to: any, transport: authenticated}\n";
	_cleanup_policy_doc_ struct policy_doc *doc = NULL;
	struct policy_error err = {};

	cr_assert_eq(policy_parse_buffer("t.yaml", text, strlen(text), &doc, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(doc->transport, POLICY_TRANSPORT_AUTHENTICATED);
	cr_expect_eq(doc->rules[0].transport, POLICY_TRANSPORT_DEFAULT);
	cr_expect_eq(doc->rules[1].transport, POLICY_TRANSPORT_ENCRYPTED);
	cr_expect_eq(doc->rules[2].transport, POLICY_TRANSPORT_AUTHENTICATED);
}

Test(policy_parse, invalid_documents)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_docs); i++) {
		const struct bad_doc *b = &bad_docs[i];
		struct policy_doc *doc = (struct policy_doc *)&doc; /* must stay untouched */
		struct policy_error err = {};
		int r;

		r = policy_parse_buffer("t.yaml", b->text, strlen(b->text), &doc, &err);
		cr_expect_eq(r, -EINVAL, "%s: returned %d, expected -EINVAL", b->what, r);
		cr_expect_eq(doc, (struct policy_doc *)&doc, "%s: output written on failure",
			     b->what);
		if (b->prefix)
			cr_expect(!strncmp(err.msg, b->msg, strlen(b->msg)) &&
					  strlen(err.msg) > strlen(b->msg),
				  "%s:\n got:      %s\n expected: %s...", b->what, err.msg, b->msg);
		else
			cr_expect_str_eq(err.msg, b->msg, "%s:\n got:      %s\n expected: %s",
					 b->what, err.msg, b->msg);
	}
}

Test(policy_parse, long_values_do_not_hide_the_cause)
{
	char text[4096], id[2100];
	struct policy_doc *doc = NULL;
	struct policy_error err = {};
	int r;

	memset(id, 'a', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	snprintf(text, sizeof(text),
		 RULE_HEAD "  from: {spiffe_id: \"spiffe://td/%s\"}\n  to: any\n", id);
	r = policy_parse_buffer("t.yaml", text, strlen(text), &doc, &err);
	cr_assert_eq(r, -EINVAL);
	cr_assert(strstr(err.msg, "2048"), "the cause was cut off: %s", err.msg);
	cr_assert_lt(strlen(err.msg), POLICY_ERROR_MAX);
}

Test(policy_parse, label_conditions_are_limited)
{
	char text[4096];
	size_t used;
	struct policy_doc *doc = NULL;
	struct policy_error err = {};

	used = (size_t)snprintf(text, sizeof(text), RULE_HEAD "  to: any\n  from:\n    labels:\n");
	for (int i = 0; i <= POLICY_LABELS_MAX; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, "      k%d: v\n", i);
	cr_assert_lt(used, sizeof(text));
	cr_assert_eq(policy_parse_buffer("t.yaml", text, used, &doc, &err), -EINVAL);
	cr_expect_str_eq(err.msg, "t.yaml:8:7: rule 'r': 'labels': more than 64 conditions");
}

/* Rule names are checked for duplicates with a hash set, not pairwise. */
Test(policy_parse, many_rules_and_a_late_duplicate, .timeout = 20)
{
	enum { RULES = 50000 };
#define RULE_LINE "- {name: rule-%d, action: allow, from: any, to: any}\n"
	size_t cap = 64 + (RULES + 1) * 64, used;
	_cleanup_free_ char *text = malloc(cap);
	struct policy_doc *doc = NULL;
	struct policy_error err = {};

	cr_assert_not_null(text);
	used = (size_t)snprintf(text, cap, "version: 1\nrules:\n");
	for (int i = 0; i < RULES; i++)
		used += (size_t)snprintf(text + used, cap - used, RULE_LINE, i);
	cr_assert_eq(policy_parse_buffer("t.yaml", text, used, &doc, &err), 0, "%s", err.msg);
	cr_expect_eq(doc->n_rules, RULES);
	cr_expect_str_eq(doc->rules[RULES - 1].name, "rule-49999");
	policy_doc_free(doc);

	used += (size_t)snprintf(text + used, cap - used, RULE_LINE, 17);
#undef RULE_LINE
	doc = NULL;
	cr_assert_eq(policy_parse_buffer("t.yaml", text, used, &doc, &err), -EINVAL);
	cr_expect_str_eq(err.msg, "t.yaml:50003:10: rule #50001: duplicate rule name 'rule-17' "
				  "(first used by the rule at line 20)");
}

/* ---------------------------------------------------------------- files */

Test(policy_parse, file_and_missing_file)
{
	char path[] = "/tmp/fg-policy-XXXXXX";
	struct policy_doc *doc = NULL;
	struct policy_error err = {};
	int fd, r;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, full_yaml, strlen(full_yaml)), (ssize_t)strlen(full_yaml));
	close(fd);
	r = policy_parse_file(path, &doc, &err);
	unlink(path);
	cr_assert_eq(r, 0, "%s", err.msg);
	assert_full_doc(doc);
	policy_doc_free(doc);

	doc = NULL;
	r = policy_parse_file(path, &doc, &err);
	cr_assert_eq(r, -ENOENT);
	cr_assert_null(doc);
	cr_assert(strstr(err.msg, path) && strstr(err.msg, "No such file"), "%s", err.msg);
}

Test(policy_parse, error_names_the_file)
{
	char path[] = "/tmp/fg-policy-XXXXXX", expected[128];
	struct policy_doc *doc = NULL;
	struct policy_error err = {};
	const char *text = "version: 1\nrules: []\n";
	int fd, r;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	r = policy_parse_file(path, &doc, &err);
	unlink(path);
	cr_assert_eq(r, -EINVAL);
	snprintf(expected, sizeof(expected), "%s:2:8: 'rules': empty list", path);
	cr_assert_str_eq(err.msg, expected);
}

/* docs/examples/, from FG_EXAMPLES_DIR or relative to this source file. */
static void examples_dir(char *buf, size_t len)
{
	const char *env = getenv("FG_EXAMPLES_DIR");
	char src[4096];

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	snprintf(src, sizeof(src), "%s", __FILE__);
	snprintf(buf, len, "%s/../docs/examples", dirname(src));
}

static bool is_policy_file(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && !strcmp(name + n - 5, ".yaml")) ||
	       (n > 5 && !strcmp(name + n - 5, ".json"));
}

Test(policy_parse, every_example_is_valid)
{
	char dir[4096], path[8192];
	struct dirent *de;
	size_t parsed = 0;
	DIR *d;

	examples_dir(dir, sizeof(dir));
	d = opendir(dir);
	cr_assert_not_null(d, "cannot open %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		struct policy_doc *doc = NULL;
		struct policy_error err = {};

		if (!is_policy_file(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		cr_expect_eq(policy_parse_file(path, &doc, &err), 0, "%s", err.msg);
		policy_doc_free(doc);
		parsed++;
	}
	closedir(d);
	/* An emptied or moved directory must not pass as "all examples valid". */
	cr_assert_geq(parsed, 4, "only %zu examples found in %s", parsed, dir);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy language: a YAML document (JSON is accepted too, as YAML flow
 * style) of allow and deny rules between SPIFFE identities, parsed into a
 * struct policy_doc that the compiler (policy_compile.h) turns into fg_policy
 * entries. The language is described in docs/policy.md.
 *
 * The parser is strict: unknown keys, duplicate keys, wrong types, empty
 * lists, bad ports, bad SPIFFE IDs and duplicate rule names are errors, each
 * reported as "FILE:LINE:COLUMN: rule 'NAME': MESSAGE" (lines and columns
 * from 1; the rule part only inside a rule, "rule #N" before its name is
 * known). Nothing is logged: the message goes to the caller.
 */
#ifndef FEDGUARD_POLICY_PARSE_H
#define FEDGUARD_POLICY_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <linux/types.h>

enum policy_action {
	POLICY_ALLOW = 1,
	POLICY_DENY = 2,
};

enum policy_auth {
	POLICY_AUTH_NONE = 0,
	POLICY_AUTH_REQUIRED = 1, /* mTLS between the two workloads */
};

/*
 * How an allowed flow travels (docs/policy.md, "Transport"). DEFAULT: as
 * the document's `transport` says, else encrypted when the flow leaves the
 * node; a document's `authenticated` never applies to a flow between two
 * trust domains, only a rule's does.
 */
enum policy_transport {
	POLICY_TRANSPORT_DEFAULT = 0,
	POLICY_TRANSPORT_ENCRYPTED = 1,	    /* inside a TLS tunnel between the two workloads */
	POLICY_TRANSPORT_AUTHENTICATED = 2, /* the direct path, the pair authenticated (or not) */
};

/* Bits of policy_rule.protocols. */
enum policy_proto {
	POLICY_PROTO_TCP = 1,
	POLICY_PROTO_UDP = 2,
	POLICY_PROTO_ALL = POLICY_PROTO_TCP | POLICY_PROTO_UDP,
};

enum policy_limits {
	POLICY_ERROR_MAX = 512,	    /* bytes of an error message */
	POLICY_NAME_MAX = 128,	    /* bytes of a rule name */
	POLICY_LABEL_MAX = 256,	    /* bytes of a label key or value */
	POLICY_LABELS_MAX = 64,	    /* label conditions in one selector */
	POLICY_FILE_MAX = 16 << 20, /* bytes of a policy file */
};

enum policy_label_op {
	POLICY_LABEL_EQUALS, /* key: value */
	POLICY_LABEL_IN,     /* key: [v1, v2] */
	POLICY_LABEL_EXISTS, /* key: {exists: true} */
	POLICY_LABEL_ABSENT, /* key: {exists: false} */
};

struct policy_label_match {
	char *key;
	enum policy_label_op op;
	char **values; /* one for EQUALS, several for IN, none else */
	size_t n_values;
};

/* One selector: the AND of the fields present (at least one is). */
struct policy_selector {
	char *spiffe_id;    /* an ID or a subtree pattern (spiffe.h); NULL = any */
	char *trust_domain; /* NULL = any */
	struct policy_label_match *labels;
	size_t n_labels;
};

/* The `from` or `to` of a rule: any identity, or the OR of selectors. */
struct policy_peers {
	bool any;
	struct policy_selector *sel;
	size_t n_sel;
};

/* Inclusive; a single port has first == last. */
struct policy_port_range {
	__u16 first;
	__u16 last;
};

struct policy_rule {
	char *name;
	enum policy_action action;
	struct policy_peers from;
	struct policy_peers to;
	struct policy_port_range *ports; /* as written; n_ports == 0: all ports */
	size_t n_ports;
	unsigned int protocols; /* enum policy_proto bits, never 0 */
	enum policy_auth auth;
	enum policy_transport transport;
	unsigned int line; /* where the rule starts, from 1 */
	unsigned int column;
};

struct policy_doc {
	__u64 version;
	enum policy_transport transport; /* the document's `transport`, DEFAULT when absent */
	struct policy_rule *rules; /* rule i has rule_id i + 1 */
	size_t n_rules;		   /* at least 1 */
};

/* Written only when a function fails with -EINVAL (or -EIO, -ENOENT...). */
struct policy_error {
	char msg[POLICY_ERROR_MAX];
};

/*
 * Parses buf (len bytes, NUL not needed), naming it `name` in messages.
 * Returns 0 and sets *doc, or -EINVAL (invalid document), -ENOMEM, with
 * err->msg set.
 */
int policy_parse_buffer(const char *name, const char *buf, size_t len, struct policy_doc **doc,
			struct policy_error *err);

/* Reads and parses a file of at most POLICY_FILE_MAX bytes; also -errno of I/O. */
int policy_parse_file(const char *path, struct policy_doc **doc, struct policy_error *err);

void policy_doc_free(struct policy_doc *doc);

static inline void policy_doc_freep(struct policy_doc **doc)
{
	policy_doc_free(*doc);
}

#define _cleanup_policy_doc_ __attribute__((cleanup(policy_doc_freep)))

/* "allow" or "deny". */
const char *policy_action_name(enum policy_action action);

#endif /* FEDGUARD_POLICY_PARSE_H */

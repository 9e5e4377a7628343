/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy compiler: a parsed document (policy_parse.h) and this node's
 * view of identities in, the fg_policy entries of this node out, in the form
 * the datapath probes them (see "Policy and its atomic swap" in
 * docs/ARCHITECTURE.md and "From rules to kernel entries" in docs/policy.md).
 *
 * For a rule with from-set F and to-set T:
 *   - an EGRESS entry {src = f, dst = t} for every local f in F,
 *   - an INGRESS entry {src = f, dst = t} for every local t in T,
 * where the peer side is FG_ID_ANY when that side of the rule is `any`;
 * port 0 when the rule's ports cover 1-65535, else one entry per port; one
 * entry per protocol. Same key from several rules: a deny wins over any
 * allow; among allows the first rule's id and the strictest auth are kept;
 * among denies the first rule's id.
 *
 * Also here: the diff of two entry sets (policy apply --dry-run), the rule
 * that decides one connection (policy check), and a printer (policy show).
 */
#ifndef FEDGUARD_POLICY_COMPILE_H
#define FEDGUARD_POLICY_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "fedguard/abi.h"
#include "policy_parse.h"

enum policy_compile_limits {
	POLICY_COMPILE_MAX_ENTRIES = 1000000, /* default cap on entries per document */
	POLICY_REASON_MAX = 512,	      /* bytes of policy_verdict.reason */
	POLICY_ENTRY_TEXT_MAX = 5200,	      /* bytes of one formatted entry, IDs included */
};

struct policy_label {
	const char *key;
	const char *value;
};

/* One identity this node knows; the compiler borrows these, never frees them. */
struct policy_identity {
	const char *spiffe_id;
	__u32 id;   /* node-local numeric identity, >= FG_ID_DYNAMIC_MIN */
	bool local; /* a workload of this node (else a remote endpoint) */
	const struct policy_label *labels;
	size_t n_labels;
};

struct policy_entry {
	struct fg_policy_key key;
	struct fg_policy_value value;
};

/* Entries in ascending key order: dir, src_id, dst_id, port, proto. */
struct policy_entries {
	struct policy_entry *entries;
	size_t n;
};

struct policy_compile_opts {
	size_t max_entries; /* 0 = POLICY_COMPILE_MAX_ENTRIES */
};

/*
 * Compiles doc for this node. ids must have unique numeric ids in the
 * dynamic range and unique, valid SPIFFE IDs. opts may be NULL. Returns 0
 * and sets *out, or -EINVAL (a bad identity view), -E2BIG (more than
 * max_entries entries), -ENOMEM, with err->msg set.
 */
int policy_compile(const struct policy_doc *doc, const struct policy_identity *ids, size_t n_ids,
		   const struct policy_compile_opts *opts, struct policy_entries **out,
		   struct policy_error *err);

void policy_entries_free(struct policy_entries *set);

static inline void policy_entries_freep(struct policy_entries **set)
{
	policy_entries_free(*set);
}

#define _cleanup_policy_entries_ __attribute__((cleanup(policy_entries_freep)))

/* Sorts entries into the order policy_compile() produces (e.g. after a map dump). */
void policy_entries_sort(struct policy_entries *set);

/* The entry of key, or NULL; set must be sorted. */
const struct policy_entry *policy_entries_find(const struct policy_entries *set,
					       const struct fg_policy_key *key);

/*
 * What applying `new` over `old` changes in the kernel: entries of new not
 * in old with the same value (added), entries of old not in new with the
 * same value (removed). A changed value is both removed (old value) and
 * added (new value). Generation entries (FG_DIR_META) are ignored, so that
 * old may be a dump of the active map. Neither input needs to be sorted;
 * both outputs are. Returns 0 or -ENOMEM.
 */
struct policy_diff {
	struct policy_entries added;
	struct policy_entries removed;
};

int policy_diff(const struct policy_entries *old, const struct policy_entries *new,
		struct policy_diff **out);

void policy_diff_free(struct policy_diff *diff);

static inline void policy_diff_freep(struct policy_diff **diff)
{
	policy_diff_free(*diff);
}

#define _cleanup_policy_diff_ __attribute__((cleanup(policy_diff_freep)))

/* The outcome of one connection under a document. */
struct policy_verdict {
	__u8 action;			/* FG_ACT_ALLOW or FG_ACT_DENY */
	__u8 auth;			/* enum fg_auth_mode, for an allow */
	__u8 dir;			/* the side that judges: FG_DIR_EGRESS or _INGRESS */
	__u8 transport;			/* enum fg_transport, for an allow */
	size_t rule_index;		/* 1-based rule_id; 0 for the default deny */
	const char *rule_name;		/* points into doc; NULL for the default deny */
	size_t overridden_index;	/* deny: the allow it overrides, else 0 */
	char reason[POLICY_REASON_MAX]; /* in words, for operators */
};

/*
 * Which rule decides a connection from from_id to to_id on port/proto
 * (IPPROTO_TCP or IPPROTO_UDP), evaluated on the rules themselves. Labels
 * come from ids; an ID not in ids is judged without labels. The rule named
 * is the one the datapath reports for the same connection from the
 * compiled entries: judged at egress when from_id is a local identity, at
 * ingress when only to_id is, and as the initiator's node would (egress)
 * when neither is (see docs/policy.md). Returns 0 and fills *result, or
 * -EINVAL (bad SPIFFE ID, port 0, other protocol) without touching *result:
 * the caller describes its own bad input.
 */
int policy_check(const struct policy_doc *doc, const struct policy_identity *ids, size_t n_ids,
		 const char *from_id, const char *to_id, __u16 port, __u8 proto,
		 struct policy_verdict *result);

/*
 * One entry as one line without newline, e.g.
 *   "egress spiffe://td/web -> spiffe://td/api port 443/tcp allow auth=mtls rule=2"
 * Identities are shown by SPIFFE ID when ids knows them, else "id:N";
 * FG_ID_ANY as "any", port 0 as "any". Returns the length it needed, like
 * snprintf, or -ENOMEM.
 */
int policy_entry_format(const struct policy_entry *e, const struct policy_identity *ids,
			size_t n_ids, char *buf, size_t len);

/* Every entry, one line each; returns 0, -EIO or -ENOMEM. */
int policy_entries_print(FILE *f, const struct policy_entries *set,
			 const struct policy_identity *ids, size_t n_ids);

/* Removed entries as "- LINE", then added ones as "+ LINE"; returns 0, -EIO or -ENOMEM. */
int policy_diff_print(FILE *f, const struct policy_diff *diff, const struct policy_identity *ids,
		      size_t n_ids);

/*
 * Whether some allow rule of doc lets an identity of trust domain td call
 * `to` (on some port): its from could select an identity of td (a selector
 * by labels alone could) and its to selects `to`. Deny rules are not
 * considered: this says what another mesh may learn about, not what passes.
 */
bool policy_admits_from_td(const struct policy_doc *doc, const char *td,
			   const struct policy_identity *to);

/* The other way: whether some allow rule lets `from` call an identity of td. */
bool policy_admits_to_td(const struct policy_doc *doc, const struct policy_identity *from,
			 const char *td);

#endif /* FEDGUARD_POLICY_COMPILE_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Makes the kernel maps say what the agent's state document says:
 * fg_cgroups from workloads, fg_ipcache from workload addresses and
 * endpoints, fg_quarantine from quarantine records, and fg_policy from the
 * compiled policy (swapped atomically, and only when the entries change).
 * Also tears down the sockets of quarantined identities.
 *
 * Applying is idempotent: the maps are brought to the desired content by
 * updating what is wanted and deleting what is not, so applying the old
 * state again undoes a failed apply of a new one.
 */
#ifndef FEDGUARD_DATAPATH_H
#define FEDGUARD_DATAPATH_H

#include <limits.h>
#include <stddef.h>

#include <json-c/json.h>
#include <linux/types.h>

#include "policy_compile.h"

struct loader;

struct kv_set;

struct datapath {
	char pin_dir[PATH_MAX];
	int cgroups_fd;
	int ipcache_fd;
	int quarantine_fd;
	int slot_fd;
	int iter_prog_fd;		/* fg_iter_tcp, from the loaded object */
	int iter_link_fd;		/* its iterator link, made on first use */
	int cut_prog_fd;		/* fg_iter_auth, from the loaded object */
	int cut_link_fd;		/* its iterator link, made on first use */
	volatile __u32 *cut_td;		/* fg_iter_auth's parameter, in the object's .bss */
	__u8 node[16];			/* this node's address, IPv4-mapped for v4 */
	__u32 policy_max_entries;
	/* what datapath_apply() last brought each map to; NULL: not yet, or failed */
	struct kv_set *synced_quarantine, *synced_cgroups, *synced_ipcache;
};

/* The identities the policy compiler sees, borrowed from a state document. */
struct datapath_view {
	struct policy_identity *ids;
	size_t n;
	struct policy_label *labels;	/* storage for every identity's labels */
};

int datapath_open(struct datapath *dp, const struct loader *l, const __u8 node[16],
		  __u32 policy_max_entries);
void datapath_close(struct datapath *dp);

int datapath_view(struct json_object *state, struct datapath_view *v);

/* The number of spiffe_id's trust domain in state ("trust_domains"), 0 when it has none. */
__u32 datapath_td_number(struct json_object *state, const char *spiffe_id);
void datapath_view_free(struct datapath_view *v);

/*
 * Parses and compiles the state's policy; an empty set when it has none.
 * On -EINVAL, why holds the parser's or compiler's message.
 */
int datapath_compile(struct json_object *state, struct policy_entries **out, char *why,
		     size_t why_len);

/* The entries of the fg_policy map in force, without the generation entry. */
int datapath_policy_read(struct datapath *dp, struct policy_entries **out, __u32 *generation);

/* The generation of the fg_policy map in force. */
int datapath_policy_generation(struct datapath *dp, __u32 *generation);

/* Brings every map to @state. On failure, why says what failed. */
int datapath_apply(struct datapath *dp, struct json_object *state, char *why, size_t why_len);

/*
 * Destroys the TCP sockets of quarantined identities in the agent's network
 * namespace and in every workload's; *destroyed counts them.
 */
int datapath_destroy_sockets(struct datapath *dp, struct json_object *state,
			     unsigned int *destroyed);

/*
 * Destroys the TCP sockets bound with mTLS to a peer of trust domain @td
 * (its number) whose pair has no valid fg_auth entry, in the same
 * namespaces; *destroyed counts them. For a trust domain no longer
 * trusted, once its fg_auth entries are gone.
 */
int datapath_cut_trust_domain(struct datapath *dp, struct json_object *state, __u32 td,
			      unsigned int *destroyed);

#endif /* FEDGUARD_DATAPATH_H */

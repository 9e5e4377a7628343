/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A running fedguardd: the loaded datapath, the state document the maps are
 * derived from, and the commands the control socket serves.
 */
#ifndef FEDGUARD_AGENT_H
#define FEDGUARD_AGENT_H

#include <limits.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "control.h"
#include "datapath.h"

struct events;
struct loader;
struct peerauth;
struct observe;
struct fed;

struct agent {
	const char *instance;
	const char *version;		/* of the fedguardd binary, for status */
	struct loader *loader;
	struct datapath dp;
	struct json_object *state;	/* committed: what the maps and the disk hold */
	struct events *events;		/* the fg_events reader */
	struct peerauth *auth;		/* identity and peer authentication, or NULL */
	struct observe *observe;	/* flow records, flow log, metrics, alerts */
	unsigned long state_gen;	/* bumped whenever state is replaced */
	EVP_PKEY *policy_key;		/* --policy-key: policies must be signed by it; NULL: not checked */
	struct fed *fed;		/* the mesh store (--store), or NULL */
	char node_addr[64];		/* --node-address as given, or "" */
	char state_dir[PATH_MAX];
};

/* The command table of the control socket; ctx is a struct agent. */
extern const struct control_command agent_commands[];

/*
 * Makes @next the agent's state: maps first, then the state file. On any
 * failure the maps are brought back to the current state, @next is
 * dropped and err says why. Takes @next in every case.
 */
int agent_commit(struct agent *a, struct json_object *next, struct control_error *err);

/*
 * The two halves of agent_commit(), for commands that act between them:
 * agent_apply() brings the maps to @next (on failure: back to the current
 * state, @next dropped); agent_persist() saves @next and makes it current
 * (on failure: maps back, @next dropped).
 */
int agent_apply(struct agent *a, struct json_object *next, struct control_error *err);
int agent_persist(struct agent *a, struct json_object *next, struct control_error *err);

/*
 * Loads the state directory and brings the maps to it (agent start). With a
 * policy key, the stored policy must carry a valid signature by it: else
 * nothing is applied (the maps stay as pinned) and the start fails.
 */
int agent_restore(struct agent *a);

#endif /* FEDGUARD_AGENT_H */

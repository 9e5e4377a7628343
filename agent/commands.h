/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control commands of fedguardd (docs/control-protocol.md). Each takes
 * the struct agent as ctx, validates every argument before it changes
 * anything, and commits a changed copy of the state with agent_commit().
 */
#ifndef FEDGUARD_COMMANDS_H
#define FEDGUARD_COMMANDS_H

#include <stdbool.h>

#include <json-c/json.h>
#include <linux/types.h>

#include "control.h"

#define COMMAND(name)                                                                              \
	int name(void *ctx, struct json_object *args, struct json_object *result,                  \
		 struct control_error *err)

COMMAND(cmd_workload_add);
COMMAND(cmd_workload_del);
COMMAND(cmd_workload_list);
COMMAND(cmd_endpoint_add);
COMMAND(cmd_endpoint_del);
COMMAND(cmd_endpoint_list);
COMMAND(cmd_policy_apply);
COMMAND(cmd_policy_show);
COMMAND(cmd_policy_check);
COMMAND(cmd_quarantine_add);
COMMAND(cmd_quarantine_del);
COMMAND(cmd_quarantine_list);
COMMAND(cmd_sockets_list);
COMMAND(cmd_auth_list);
COMMAND(cmd_auth_flush);
COMMAND(cmd_bundle_set);
COMMAND(cmd_bundle_del);
COMMAND(cmd_bundle_list);

/* A SPIFFE ID argument, validated; invalid_argument naming the reason. */
int command_spiffe_id(struct json_object *args, const char *name, const char **out,
		      struct control_error *err);

/* Numbers the ID and its trust domain in @next (a state being changed). */
int command_number_identity(struct json_object *next, const char *id, __u32 *num,
			    struct control_error *err);

/*
 * The registration of endpoint id from args (ips, node, labels), validated
 * against state as endpoint.add does: *out is a new object, or an error.
 */
int registry_endpoint_reg(struct json_object *state, const char *id, struct json_object *args,
			  struct json_object **out, struct control_error *err);

struct agent;

/*
 * Puts target (an identity, or spiffe://TD) under quarantine with record
 * (taken), as quarantine.add does: maps first, then the sockets, then the
 * state file. A target in force already keeps its record and only has its
 * sockets destroyed again. *destroyed counts them.
 */
int quarantine_enforce(struct agent *a, const char *target, struct json_object *record,
		       unsigned int *destroyed, struct control_error *err);

/*
 * The quarantine --alert-quarantine takes when an alert of kind is raised
 * about target: as quarantine.add would, with the alert as the reason, and
 * to the mesh with a store. Nothing when target is in force already.
 */
void quarantine_automatic(struct agent *a, const char *target, const char *kind, __u64 alert);

/* Lifts the quarantine of target; not_found when there is none. */
int quarantine_lift(struct agent *a, const char *target, struct control_error *err);

/* Entries of each of policy.apply's lists unless `all_entries` is asked for. */
#define POLICY_APPLY_LIST_MAX 1000

/*
 * Applies a policy document as policy.apply does: parsed, admitted (with a
 * policy key: signature and a higher version), compiled, and swapped in one
 * step unless dry_run. The counts of entries added and removed go to
 * result, and the first list_max of each (0: none).
 */
int policy_apply_text(struct agent *a, const char *text, const char *source, const char *sig,
		      bool dry_run, size_t list_max, struct json_object *result,
		      struct control_error *err);

#endif /* FEDGUARD_COMMANDS_H */

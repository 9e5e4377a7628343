// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <string.h>

#include "fedguard/abi.h"
#include "reason.h"

static const char *const reason_names[] = {
	[FG_REASON_ALLOW_POLICY] = "allow_policy",
	[FG_REASON_ALLOW_ESTABLISHED] = "allow_established",
	[FG_REASON_ALLOW_REPLY] = "allow_reply",
	[FG_REASON_ALLOW_UNMANAGED] = "allow_unmanaged",
	[FG_REASON_DENY_POLICY] = "deny_policy",
	[FG_REASON_DENY_RULE] = "deny_rule",
	[FG_REASON_DENY_NO_IDENTITY] = "deny_no_identity",
	[FG_REASON_DENY_UNKNOWN_PEER] = "deny_unknown_peer",
	[FG_REASON_DENY_QUARANTINE_LOCAL] = "deny_quarantine_local",
	[FG_REASON_DENY_QUARANTINE_PEER] = "deny_quarantine_peer",
	[FG_REASON_DENY_QUARANTINE_TD] = "deny_quarantine_td",
	[FG_REASON_DENY_AUTH_MISSING] = "deny_auth_missing",
	[FG_REASON_DENY_AUTH_EXPIRED] = "deny_auth_expired",
	[FG_REASON_DENY_SPOOF] = "deny_spoof",
	[FG_REASON_DENY_MALFORMED] = "deny_malformed",
	[FG_REASON_DENY_NO_POLICY] = "deny_no_policy",
	[FG_REASON_DENY_MAP_FULL] = "deny_map_full",
	[FG_REASON_DENY_NO_TUNNEL] = "deny_no_tunnel",
};

/* A reason appended to the ABI without a name here fails the build. */
_Static_assert(sizeof(reason_names) / sizeof(reason_names[0]) == FG_REASON_MAX,
	       "every enum fg_reason value needs a name");

const char *reason_name(__u32 reason)
{
	if (reason >= FG_REASON_MAX)
		return NULL;
	return reason_names[reason];
}

int reason_from_name(const char *name)
{
	int i;

	for (i = 0; i < FG_REASON_MAX; i++) {
		if (strcmp(reason_names[i], name) == 0)
			return i;
	}
	return -EINVAL;
}

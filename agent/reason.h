/* SPDX-License-Identifier: Apache-2.0 */
/* Names of enum fg_reason values, as operators see them ("deny_policy"). */
#ifndef FEDGUARD_REASON_H
#define FEDGUARD_REASON_H

#include <linux/types.h>

/* The name of a reason, or NULL when reason >= FG_REASON_MAX. */
const char *reason_name(__u32 reason);

/* The reason of a name, or -EINVAL when no reason has that name. */
int reason_from_name(const char *name);

#endif /* FEDGUARD_REASON_H */

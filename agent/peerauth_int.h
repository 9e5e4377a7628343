/* SPDX-License-Identifier: Apache-2.0 */
/* The state of peerauth.c and peerauth_bundles.c; not an API. */
#ifndef FEDGUARD_PEERAUTH_INT_H
#define FEDGUARD_PEERAUTH_INT_H

#include <linux/types.h>

#include "peerauth.h"
#include "spiffe.h"

struct auth_engine;
struct bundle_set;
struct svids;

struct peerauth {
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	__u8 node[16];			/* --node-address */
	struct svids *svids;
	struct bundle_set *bundles;
	struct auth_engine *engine;
	struct tunnel *tunnel;		/* the encrypted transport, or NULL */
	int auth_fd;			/* the pinned fg_auth map */
	int timer_fd;			/* CLOCK_MONOTONIC: renewals and clean-up */
	__u64 next_gc_ns;
};

/* The directory of bundles set or deleted at run time: <state-dir>/bundles. */
void peerauth_bundles_dir(const struct agent *a, char *buf, size_t len);

#endif /* FEDGUARD_PEERAUTH_INT_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The X.509-SVIDs this node holds: its own (spiffe://TD/fedguard/node/NAME)
 * and one for each registered workload of its trust domain. The agent mints
 * them itself (ca_issue()) with the node's signing CA, the node-ca.pem and
 * node-ca.key of `fedguard-ca issue-node`, and keeps them in memory only:
 * keys are never written to disk, a restarted agent mints new ones.
 *
 * Every SVID is renewed at half its lifetime, give or take a tenth of it
 * (jitter, so that the SVIDs of many nodes do not all renew together); the
 * old one stays valid until its notAfter, so renewal interrupts nothing.
 * notBefore is SVIDS_BACKDATE seconds in the past, for peers whose clocks
 * are a little behind; notAfter never passes the node CA's own.
 *
 * Threads: the agent's main thread changes the store (svids_sync(),
 * svids_renew()); any thread may take a credential with svids_get() at any
 * time and keeps it, unchanged, until it drops it with svids_cred_put().
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success, why only on failure (and only
 * when why_len is not 0). Nothing here logs.
 */
#ifndef FEDGUARD_SVIDS_H
#define FEDGUARD_SVIDS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <linux/types.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "spiffe.h"

enum {
	SVIDS_TTL_DEFAULT = 3600, /* seconds, --svid-ttl */
	SVIDS_TTL_MIN = 4,	  /* renewal needs a lifetime of a few seconds */
	SVIDS_TTL_MAX = 30 * 86400,
	SVIDS_BACKDATE = 60,	  /* notBefore this many seconds before minting */
	SVIDS_RETRY_MAX = 30,	  /* seconds between attempts after a failed renewal */
	SVIDS_WHY_MAX = 1024,
};

/*
 * One SVID and its key, immutable once made. chain is what follows the
 * leaf in a TLS Certificate message: the node CA and whatever followed it
 * in the node CA's file. serial is unique in the store's lifetime: a new
 * SVID of the same ID has a new one.
 */
struct svids_cred {
	char spiffe_id[SPIFFE_ID_MAX + 1];
	X509 *cert;
	EVP_PKEY *key;
	STACK_OF(X509) *chain;
	time_t not_before;
	time_t not_after; /* the earliest notAfter of cert and chain */
	time_t renew_at;
	__u64 serial;
	int refs;
};

/* The node's signing CA and the store's settings. */
struct svids_config {
	const char *trust_domain; /* the node's; the CA must be of it */
	const char *node_name;	  /* one path segment: spiffe://TD/fedguard/node/NAME */
	X509 *ca;		  /* the node CA (borrowed: the store takes references) */
	EVP_PKEY *ca_key;
	STACK_OF(X509) *ca_chain; /* ca and what follows it in its file, in order */
	unsigned int ttl;	  /* seconds, SVIDS_TTL_MIN to SVIDS_TTL_MAX */
};

struct svids;

/*
 * Reads the node CA: every certificate of cert_path (the first is the CA
 * itself) and the key of key_path. 0, or -errno with the file and the
 * cause in why. The caller frees *chain (sk_X509_pop_free) and *key.
 */
int svids_load_ca(const char *cert_path, const char *key_path, STACK_OF(X509) **chain,
		  EVP_PKEY **key, char *why, size_t why_len);

/*
 * A store with the node's own SVID minted at now. -EINVAL when the CA is
 * no CA of cfg->trust_domain, the key is not its key, the node name makes
 * no valid SPIFFE ID or the TTL is out of range; -EKEYEXPIRED when the CA
 * is no longer valid; -ENOMEM.
 */
int svids_new(const struct svids_config *cfg, time_t now, struct svids **out, char *why,
	      size_t why_len);

void svids_free(struct svids *s);

const char *svids_trust_domain(const struct svids *s);
const char *svids_node_id(const struct svids *s);

/*
 * Makes the store hold the node's SVID and one for each of the n IDs of
 * ids (all of the store's trust domain, else -EINVAL): mints the missing
 * ones at now and drops those not listed. Minting stops at the first
 * failure, which it returns; the SVIDs minted before it stay.
 */
int svids_sync(struct svids *s, const char *const *ids, size_t n, time_t now, char *why,
	       size_t why_len);

/*
 * Renews every SVID whose renewal time has come. Returns how many were
 * renewed, or the first failure (the SVID that failed keeps serving until
 * its notAfter and is tried again SVIDS_RETRY_MAX seconds later at most).
 */
int svids_renew(struct svids *s, time_t now, char *why, size_t why_len);

/* The earliest renewal time of the store's SVIDs. */
time_t svids_next_renewal(struct svids *s);

/* The SVID of spiffe_id with a reference for the caller, or NULL. */
struct svids_cred *svids_get(struct svids *s, const char *spiffe_id);

void svids_cred_put(struct svids_cred *c);

/* The number of SVIDs, and the i-th (by SPIFFE ID) with a reference, or NULL. */
size_t svids_count(struct svids *s);
struct svids_cred *svids_at(struct svids *s, size_t i);

static inline void svids_cred_putp(struct svids_cred **c)
{
	if (*c)
		svids_cred_put(*c);
}

#define _cleanup_svids_cred_ __attribute__((cleanup(svids_cred_putp)))

#endif /* FEDGUARD_SVIDS_H */

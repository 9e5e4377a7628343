// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "svids.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "cleanup.h"
#include "ssl_cleanup.h"
#include "svid.h"

struct svids {
	pthread_mutex_t lock;	  /* guards creds, n, cap and next_serial */
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char node_id[SPIFFE_ID_MAX + 1];
	X509 *ca;
	EVP_PKEY *ca_key;
	STACK_OF(X509) *ca_chain;
	time_t ca_not_after;	  /* the earliest notAfter of ca_chain */
	unsigned int ttl;
	struct svids_cred **creds; /* sorted by spiffe_id */
	size_t n, cap;
	__u64 next_serial;
};

__attribute__((format(printf, 4, 5))) static int svids_fail(int ret, char *why, size_t why_len,
							    const char *fmt, ...)
{
	va_list ap;

	if (why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* --- credentials ----------------------------------------------------------- */

static void cred_free(struct svids_cred *c)
{
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
	sk_X509_pop_free(c->chain, X509_free);
	free(c);
}

void svids_cred_put(struct svids_cred *c)
{
	if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		cred_free(c);
}

static struct svids_cred *cred_ref(struct svids_cred *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

/* A random time in [-span, span], for the renewal jitter. */
static time_t jitter(time_t span)
{
	__u32 r = 0;

	if (span <= 0 || RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return 0;
	return (time_t)(r % (__u32)(2 * span + 1)) - span;
}

/* The earliest notAfter of the certificates of chain; 0 when one does not decode. */
static time_t chain_not_after(STACK_OF(X509) *chain)
{
	time_t min = 0, t;

	for (int i = 0; i < sk_X509_num(chain); i++) {
		if (ca_cert_not_after(sk_X509_value(chain, i), &t))
			return 0;
		if (!min || t < min)
			min = t;
	}
	return min;
}

static STACK_OF(X509) *chain_dup(STACK_OF(X509) *chain)
{
	return X509_chain_up_ref(chain);
}

/* Mints the SVID of id at now; the caller holds the lock (for next_serial). */
static int mint(struct svids *s, const char *id, time_t now, struct svids_cred **out, char *why,
		size_t why_len)
{
	struct ca_request req = {
		.kind = CA_LEAF,
		.spiffe_id = id,
		.common_name = id,
		.not_before = now - SVIDS_BACKDATE,
		.not_after = now + (time_t)s->ttl,
	};
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	_cleanup_x509_ X509 *cert = NULL;
	struct svids_cred *c;
	char msg[512];
	time_t life;
	int r;

	if (req.not_after > s->ca_not_after)
		req.not_after = s->ca_not_after;
	if (req.not_after <= now)
		return svids_fail(-EKEYEXPIRED, why, why_len,
				  "SVID of '%s': the node CA is no longer valid", id);
	r = ca_key_new(&key);
	if (!r)
		r = ca_issue(&req, key, s->ca, s->ca_key, &cert, msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "no key: %s", strerror(-r));
	if (r)
		return svids_fail(r, why, why_len, "SVID of '%s': %s", id, msg);
	c = calloc(1, sizeof(*c));
	if (!c)
		return svids_fail(-ENOMEM, why, why_len, "SVID of '%s': out of memory", id);
	snprintf(c->spiffe_id, sizeof(c->spiffe_id), "%s", id);
	c->chain = chain_dup(s->ca_chain);
	c->cert = take_ptr(cert);
	c->key = take_ptr(key);
	c->not_before = req.not_before;
	c->not_after = req.not_after < s->ca_not_after ? req.not_after : s->ca_not_after;
	life = c->not_after - now;
	c->renew_at = now + life / 2 + jitter(life / 10);
	c->serial = ++s->next_serial;
	c->refs = 1;
	if (!c->chain) {
		cred_free(c);
		return svids_fail(-ENOMEM, why, why_len, "SVID of '%s': out of memory", id);
	}
	*out = c;
	return 0;
}

/* --- the sorted array --------------------------------------------------------- */

/* The index of id, or where it would go (with *found false). */
static size_t find(const struct svids *s, const char *id, bool *found)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->creds[mid]->spiffe_id, id);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static int insert(struct svids *s, size_t at, struct svids_cred *c)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct svids_cred **grown = realloc(s->creds, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		s->creds = grown;
		s->cap = cap;
	}
	memmove(s->creds + at + 1, s->creds + at, (s->n - at) * sizeof(*s->creds));
	s->creds[at] = c;
	s->n++;
	return 0;
}

static void remove_at(struct svids *s, size_t at)
{
	svids_cred_put(s->creds[at]);
	memmove(s->creds + at, s->creds + at + 1, (s->n - at - 1) * sizeof(*s->creds));
	s->n--;
}

/* Mints id and puts it in place of its current SVID, if any. Lock held. */
static int mint_put(struct svids *s, const char *id, time_t now, char *why, size_t why_len)
{
	struct svids_cred *c;
	bool found;
	size_t at;
	int r;

	r = mint(s, id, now, &c, why, why_len);
	if (r)
		return r;
	at = find(s, id, &found);
	if (found) {
		svids_cred_put(s->creds[at]);
		s->creds[at] = c;
		return 0;
	}
	r = insert(s, at, c);
	if (r) {
		svids_cred_put(c);
		return svids_fail(r, why, why_len, "SVID of '%s': out of memory", id);
	}
	return 0;
}

/* --- the store --------------------------------------------------------------- */

int svids_load_ca(const char *cert_path, const char *key_path, STACK_OF(X509) **chain,
		  EVP_PKEY **key, char *why, size_t why_len)
{
	_cleanup_x509_stack_ STACK_OF(X509) *certs = NULL;
	_cleanup_evp_pkey_ EVP_PKEY *k = NULL;
	int r;

	r = svid_load_chain(cert_path, &certs, why, why_len);
	if (!r)
		r = svid_load_key(key_path, &k, why, why_len);
	if (r)
		return r;
	*chain = take_ptr(certs);
	*key = take_ptr(k);
	return 0;
}

/* The configuration's CA, key, trust domain, name and TTL make sense. */
static int check_config(const struct svids_config *cfg, char *node_id, char *why, size_t why_len)
{
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1], msg[SVIDS_WHY_MAX];

	if (cfg->ttl < SVIDS_TTL_MIN || cfg->ttl > SVIDS_TTL_MAX)
		return svids_fail(-EINVAL, why, why_len, "SVID TTL %u s: not from %d to %d s",
				  cfg->ttl, SVIDS_TTL_MIN, SVIDS_TTL_MAX);
	if (!cfg->ca || !cfg->ca_key || !cfg->ca_chain)
		return svids_fail(-EINVAL, why, why_len, "no node CA");
	if (!(X509_get_extension_flags(cfg->ca) & EXFLAG_CA) ||
	    !(X509_get_key_usage(cfg->ca) & KU_KEY_CERT_SIGN))
		return svids_fail(-EINVAL, why, why_len,
				  "the node CA is not a CA certificate with keyCertSign");
	if (ca_cert_trust_domain(cfg->ca, td, msg, sizeof(msg)))
		return svids_fail(-EINVAL, why, why_len, "node CA: %s", msg);
	if (strcmp(td, cfg->trust_domain))
		return svids_fail(-EINVAL, why, why_len,
				  "the node CA belongs to trust domain '%s', not to '%s'", td,
				  cfg->trust_domain);
	if (X509_check_private_key(cfg->ca, cfg->ca_key) != 1) {
		ERR_clear_error();
		return svids_fail(-EINVAL, why, why_len, "the node CA key is not the node CA's");
	}
	if (!cfg->node_name || !*cfg->node_name || strchr(cfg->node_name, '/') ||
	    snprintf(node_id, SPIFFE_ID_MAX + 1, "spiffe://%s/fedguard/node/%s", td,
		     cfg->node_name) > SPIFFE_ID_MAX ||
	    spiffe_parse(node_id, NULL, msg, sizeof(msg)))
		return svids_fail(-EINVAL, why, why_len,
				  "node name '%s' makes no valid SPIFFE ID (one path segment of "
				  "a-z A-Z 0-9 . _ -)", cfg->node_name ? cfg->node_name : "");
	return 0;
}

int svids_new(const struct svids_config *cfg, time_t now, struct svids **out, char *why,
	      size_t why_len)
{
	char node_id[SPIFFE_ID_MAX + 1];
	struct svids *s;
	int r;

	r = check_config(cfg, node_id, why, why_len);
	if (r)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return svids_fail(-ENOMEM, why, why_len, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->td, sizeof(s->td), "%s", cfg->trust_domain);
	snprintf(s->node_id, sizeof(s->node_id), "%s", node_id);
	X509_up_ref(cfg->ca);
	s->ca = cfg->ca;
	EVP_PKEY_up_ref(cfg->ca_key);
	s->ca_key = cfg->ca_key;
	s->ca_chain = chain_dup(cfg->ca_chain);
	s->ca_not_after = chain_not_after(cfg->ca_chain);
	s->ttl = cfg->ttl;
	if (!s->ca_chain || !s->ca_not_after)
		r = svids_fail(s->ca_chain ? -EINVAL : -ENOMEM, why, why_len,
			       "the node CA's chain has a notAfter that does not decode");
	else
		r = mint_put(s, s->node_id, now, why, why_len);
	if (r) {
		svids_free(s);
		return r;
	}
	*out = s;
	return 0;
}

void svids_free(struct svids *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		svids_cred_put(s->creds[i]);
	free(s->creds);
	X509_free(s->ca);
	EVP_PKEY_free(s->ca_key);
	sk_X509_pop_free(s->ca_chain, X509_free);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *svids_trust_domain(const struct svids *s)
{
	return s->td;
}

const char *svids_node_id(const struct svids *s)
{
	return s->node_id;
}

static bool listed(const char *id, const char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return true;
	return false;
}

/* Every ID a valid SPIFFE ID of the store's trust domain. */
static int check_ids(const struct svids *s, const char *const *ids, size_t n, char *why,
		     size_t why_len)
{
	struct spiffe_id sid;

	for (size_t i = 0; i < n; i++) {
		if (spiffe_parse(ids[i], &sid, NULL, 0) || !sid.path_len)
			return svids_fail(-EINVAL, why, why_len, "'%s' is not a workload's SPIFFE ID",
					  ids[i]);
		if (!spiffe_in_trust_domain(&sid, s->td))
			return svids_fail(-EINVAL, why, why_len,
					  "'%s' is not in trust domain '%s': this node vouches "
					  "only for its own", ids[i], s->td);
	}
	return 0;
}

int svids_sync(struct svids *s, const char *const *ids, size_t n, time_t now, char *why,
	       size_t why_len)
{
	bool found;
	int r;

	r = check_ids(s, ids, n, why, why_len);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	for (size_t i = s->n; i-- > 0;)
		if (strcmp(s->creds[i]->spiffe_id, s->node_id) && !listed(s->creds[i]->spiffe_id, ids, n))
			remove_at(s, i);
	for (size_t i = 0; i < n && r == 0; i++) {
		find(s, ids[i], &found);
		if (!found)
			r = mint_put(s, ids[i], now, why, why_len);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* When to try a failed renewal of c again. */
static time_t retry_at(const struct svids_cred *c, time_t now)
{
	time_t wait = (c->not_after - now) / 10;

	if (wait < 1)
		wait = 1;
	return now + (wait < SVIDS_RETRY_MAX ? wait : SVIDS_RETRY_MAX);
}

int svids_renew(struct svids *s, time_t now, char *why, size_t why_len)
{
	char id[SPIFFE_ID_MAX + 1];
	int renewed = 0, err = 0, r;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		if (s->creds[i]->renew_at > now)
			continue;
		snprintf(id, sizeof(id), "%s", s->creds[i]->spiffe_id);
		r = mint_put(s, id, now, err ? NULL : why, err ? 0 : why_len);
		if (r == 0) {
			renewed++;
			continue;
		}
		s->creds[i]->renew_at = retry_at(s->creds[i], now);
		if (!err)
			err = r;
	}
	pthread_mutex_unlock(&s->lock);
	return err ? err : renewed;
}

time_t svids_next_renewal(struct svids *s)
{
	time_t next = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++)
		if (!next || s->creds[i]->renew_at < next)
			next = s->creds[i]->renew_at;
	pthread_mutex_unlock(&s->lock);
	return next;
}

struct svids_cred *svids_get(struct svids *s, const char *spiffe_id)
{
	struct svids_cred *c = NULL;
	bool found;
	size_t at;

	pthread_mutex_lock(&s->lock);
	at = find(s, spiffe_id, &found);
	if (found)
		c = cred_ref(s->creds[at]);
	pthread_mutex_unlock(&s->lock);
	return c;
}

size_t svids_count(struct svids *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

struct svids_cred *svids_at(struct svids *s, size_t i)
{
	struct svids_cred *c = NULL;

	pthread_mutex_lock(&s->lock);
	if (i < s->n)
		c = cred_ref(s->creds[i]);
	pthread_mutex_unlock(&s->lock);
	return c;
}

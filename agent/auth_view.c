// SPDX-License-Identifier: Apache-2.0
/* Views, trust, server names and listen addresses of the authentication engine. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "auth_int.h"
#include "bundle.h"
#include "cleanup.h"

/* --- server names ------------------------------------------------------------------- */

void auth_sni_name(const char *id, char *buf)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];

	SHA256((const unsigned char *)id, strlen(id), md);
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	/* a DNS label holds 63 bytes at most: two labels of 32 digits */
	snprintf(buf, AUTH_SNI_MAX, "%.32s.%.32s.fedguard.invalid", hex, hex + 32);
}

/* --- views ----------------------------------------------------------------------------- */

int auth_view_new(struct auth_view **out)
{
	struct auth_view *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v->refs = 1;
	*out = v;
	return 0;
}

int auth_view_add_identity(struct auth_view *v, const char *spiffe_id, __u32 num, bool local,
			   const __u8 node[16])
{
	return auth_view_add_identity_td(v, spiffe_id, num, 0, local, node);
}

int auth_view_add_identity_td(struct auth_view *v, const char *spiffe_id, __u32 num, __u32 td,
			      bool local, const __u8 node[16])
{
	struct view_id *id;

	if (v->sealed || !spiffe_id)
		return -EINVAL;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 32;
		struct view_id *grown = realloc(v->ids, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		v->ids = grown;
		v->cap = cap;
	}
	id = &v->ids[v->n];
	*id = (struct view_id){ .num = num, .td = td, .local = local, .has_node = node != NULL };
	id->spiffe_id = strdup(spiffe_id);
	if (!id->spiffe_id)
		return -ENOMEM;
	if (node)
		memcpy(id->node, node, 16);
	if (local)
		auth_sni_name(spiffe_id, id->sni);
	v->n++;
	return 0;
}

int auth_view_add_pair(struct auth_view *v, __u8 dir, __u32 local, __u32 peer, __u8 auth)
{
	if (v->sealed || (dir != FG_DIR_EGRESS && dir != FG_DIR_INGRESS))
		return -EINVAL;
	if (v->n_pairs == v->cap_pairs) {
		size_t cap = v->cap_pairs ? v->cap_pairs * 2 : 32;
		struct view_pair *grown = realloc(v->pairs, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		v->pairs = grown;
		v->cap_pairs = cap;
	}
	v->pairs[v->n_pairs++] = (struct view_pair){ dir, auth, local, peer };
	return 0;
}

static int cmp_num(const void *a, const void *b)
{
	__u32 x = (*(struct view_id *const *)a)->num, y = (*(struct view_id *const *)b)->num;

	return x < y ? -1 : x > y;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(struct view_id *const *)a)->spiffe_id,
		      (*(struct view_id *const *)b)->spiffe_id);
}

static int cmp_sni(const void *a, const void *b)
{
	return strcmp((*(struct view_id *const *)a)->sni, (*(struct view_id *const *)b)->sni);
}

static int cmp_pair(const void *a, const void *b)
{
	const struct view_pair *x = a, *y = b;

	if (x->dir != y->dir)
		return x->dir < y->dir ? -1 : 1;
	if (x->local != y->local)
		return x->local < y->local ? -1 : 1;
	return x->peer < y->peer ? -1 : x->peer > y->peer;
}

/* Sorted pairs, each key once with the strictest auth mode of its copies. */
static void merge_pairs(struct auth_view *v)
{
	size_t out = 0;

	if (!v->n_pairs)
		return;
	qsort(v->pairs, v->n_pairs, sizeof(*v->pairs), cmp_pair);
	for (size_t i = 1; i < v->n_pairs; i++) {
		if (cmp_pair(&v->pairs[out], &v->pairs[i]) == 0) {
			if (v->pairs[i].auth > v->pairs[out].auth)
				v->pairs[out].auth = v->pairs[i].auth;
			continue;
		}
		v->pairs[++out] = v->pairs[i];
	}
	v->n_pairs = out + 1;
}

/* -EEXIST when two identities share a number or a SPIFFE ID (the arrays are sorted). */
static int check_unique(const struct auth_view *v)
{
	for (size_t i = 1; i < v->n; i++)
		if (v->by_num[i - 1]->num == v->by_num[i]->num ||
		    strcmp(v->by_name[i - 1]->spiffe_id, v->by_name[i]->spiffe_id) == 0)
			return -EEXIST;
	return 0;
}

int auth_view_seal(struct auth_view *v)
{
	size_t n = v->n ? v->n : 1;

	if (v->sealed)
		return 0;
	v->by_num = calloc(n, sizeof(*v->by_num));
	v->by_name = calloc(n, sizeof(*v->by_name));
	v->by_sni = calloc(n, sizeof(*v->by_sni));
	if (!v->by_num || !v->by_name || !v->by_sni)
		return -ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		v->by_num[i] = v->by_name[i] = &v->ids[i];
		if (v->ids[i].local)
			v->by_sni[v->n_local++] = &v->ids[i];
	}
	qsort(v->by_num, v->n, sizeof(*v->by_num), cmp_num);
	qsort(v->by_name, v->n, sizeof(*v->by_name), cmp_name);
	qsort(v->by_sni, v->n_local, sizeof(*v->by_sni), cmp_sni);
	merge_pairs(v);
	v->sealed = true;
	return check_unique(v);
}

struct auth_view *auth_view_get(struct auth_view *v)
{
	if (v)
		__atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
	return v;
}

void auth_view_put(struct auth_view *v)
{
	if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->ids[i].spiffe_id);
	free(v->ids);
	free(v->by_num);
	free(v->by_name);
	free(v->by_sni);
	free(v->pairs);
	free(v);
}

const struct view_id *view_by_num(const struct auth_view *v, __u32 num)
{
	struct view_id key = { .num = num }, *k = &key, **hit;

	if (!v || !v->sealed)
		return NULL;
	hit = bsearch(&k, v->by_num, v->n, sizeof(*v->by_num), cmp_num);
	return hit ? *hit : NULL;
}

const struct view_id *view_by_name(const struct auth_view *v, const char *spiffe_id)
{
	struct view_id key = { .spiffe_id = (char *)spiffe_id }, *k = &key, **hit;

	if (!v || !v->sealed || !spiffe_id)
		return NULL;
	hit = bsearch(&k, v->by_name, v->n, sizeof(*v->by_name), cmp_name);
	return hit ? *hit : NULL;
}

const struct view_id *view_by_sni(const struct auth_view *v, const char *sni)
{
	struct view_id key = {}, *k = &key, **hit;

	if (!v || !v->sealed || !sni || strlen(sni) >= sizeof(key.sni))
		return NULL;
	snprintf(key.sni, sizeof(key.sni), "%s", sni);
	hit = bsearch(&k, v->by_sni, v->n_local, sizeof(*v->by_sni), cmp_sni);
	return hit ? *hit : NULL;
}

static const struct view_pair *view_pair(const struct auth_view *v, __u8 dir, __u32 local,
					 __u32 peer)
{
	struct view_pair key = { .dir = dir, .local = local, .peer = peer };

	if (!v->n_pairs)
		return NULL;
	return bsearch(&key, v->pairs, v->n_pairs, sizeof(*v->pairs), cmp_pair);
}

bool auth_view_allows(const struct auth_view *v, __u8 dir, __u32 local, __u32 peer, __u8 *auth)
{
	const struct view_pair *exact, *any;
	__u8 mode = FG_AUTH_NONE;

	if (!v || !v->sealed)
		return false;
	exact = view_pair(v, dir, local, peer);
	any = view_pair(v, dir, local, FG_ID_ANY);
	if (!exact && !any)
		return false;
	if (exact)
		mode = exact->auth;
	if (any && any->auth > mode)
		mode = any->auth;
	if (auth)
		*auth = mode;
	return true;
}

/* --- trust ------------------------------------------------------------------------------ */

static void trust_free(struct auth_trust *t)
{
	for (size_t i = 0; i < t->trust.n; i++) {
		free((char *)t->domains[i].td);
		sk_X509_pop_free(t->domains[i].roots, X509_free);
	}
	free(t->domains);
	free(t);
}

int auth_trust_new(const struct bundle_set *set, struct auth_trust **out)
{
	size_t n = set ? bundle_set_count(set) : 0;
	struct auth_trust *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->refs = 1;
	t->domains = calloc(n ? n : 1, sizeof(*t->domains));
	if (!t->domains) {
		free(t);
		return -ENOMEM;
	}
	t->trust.domains = t->domains;
	for (size_t i = 0; i < n; i++) {
		const struct bundle *b = bundle_set_at(set, i);

		t->domains[i].td = strdup(b->td);
		t->domains[i].roots = X509_chain_up_ref(b->authorities);
		t->trust.n++;
		if (!t->domains[i].td || !t->domains[i].roots) {
			trust_free(t);
			return -ENOMEM;
		}
	}
	*out = t;
	return 0;
}

struct auth_trust *auth_trust_get(struct auth_trust *t)
{
	if (t)
		__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

void auth_trust_put(struct auth_trust *t)
{
	if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
		trust_free(t);
}

const struct svid_trust *auth_trust_svid(const struct auth_trust *t)
{
	return &t->trust;
}

/* --- listen addresses ----------------------------------------------------------------- */

static int parse_port(const char *s, __u16 *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*out = (__u16)v;
	return 0;
}

int auth_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	struct sockaddr_storage ss = {};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	const char *colon, *start = s;
	size_t n;
	__u16 port;

	if (!s)
		return -EINVAL;
	if (*s == '[') {
		colon = strstr(s, "]:");
		start = s + 1;
		n = colon ? (size_t)(colon - start) : 0;
		colon = colon ? colon + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		n = colon ? (size_t)(colon - s) : 0;
	}
	if (!colon || n == 0 || n >= sizeof(host) || parse_port(colon + 1, &port))
		return -EINVAL;
	memcpy(host, start, n);
	host[n] = 0;
	if (*s != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
	} else if (*s == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	*out = ss;
	return 0;
}

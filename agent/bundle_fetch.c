// SPDX-License-Identifier: Apache-2.0
/*
 * The bundle endpoint client (bundle_fetch.h), with libcurl over OpenSSL.
 *
 * curl's peer verification stays on, but its CA-path check is replaced:
 * the SSL context callback installs verify_endpoint() as the context's
 * certificate verification, so the chain the endpoint sends is judged by
 * svid_verify() against the trust domain's bundle in force, and nothing
 * else (no system CA store). curl's host name check is off: an X.509-SVID
 * names a SPIFFE ID, not a DNS name, and the SPIFFE ID check replaces it.
 */
#define _GNU_SOURCE
#include "bundle_fetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "bundle.h"
#include "cleanup.h"
#include "curl_svid.h"
#include "spiffe.h"
#include "svid.h"

/* One transfer's state, shared with curl's callbacks. */
struct fetch {
	const char *td;
	const char *expected_id;
	const struct bundle *current;
	char *body;
	size_t len, max;
	bool too_big;
	struct svid_td_roots roots;	/* the trust domain's authorities in force */
	struct svid_trust trust;
	struct curl_svid v;		/* the endpoint's SVID judged against them */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- the transfer -------------------------------------------------------------------- */

/* Appends to the body; past max the transfer is aborted (a short count is an error to curl). */
static size_t take_body(char *data, size_t size, size_t n, void *arg)
{
	struct fetch *f = arg;
	char *p;

	n *= size;
	if (n > f->max - f->len) {
		f->too_big = true;
		return 0;
	}
	p = realloc(f->body, f->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + f->len, data, n);
	f->len += n;
	p[f->len] = 0;
	f->body = p;
	return n;
}

static int set_options(CURL *c, const char *url, struct fetch *f, unsigned int timeout_ms,
		       char *errbuf)
{
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(c, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_PROXY, "");	/* no proxy from the environment */
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max);
	SET(CURLOPT_WRITEFUNCTION, take_body);
	SET(CURLOPT_WRITEDATA, f);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_USERAGENT, "fedguard");
#undef SET
	if (rc != CURLE_OK)
		return -EINVAL;
	f->roots = (struct svid_td_roots){ .td = f->td, .roots = f->current->authorities };
	f->trust = (struct svid_trust){ .domains = &f->roots, .n = 1 };
	f->v = (struct curl_svid){ .trust = &f->trust, .expected_id = f->expected_id };
	return curl_svid_setup(c, &f->v);
}

/* What a finished transfer came to: 0 (status 200, a whole body) or -errno with why. */
static int judge_transfer(CURL *c, CURLcode rc, const struct fetch *f, const char *url,
			  unsigned int timeout_ms, const char *errbuf, char *why, size_t why_len)
{
	long status = 0;

	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (f->v.rejected) {
		snprintf(why, why_len, "bundle endpoint '%s': its SVID is rejected (%s): %s", url,
			 f->v.rejected > 0 ? svid_reason_name(f->v.rejected)
					   : strerror(-f->v.rejected),
			 f->v.why);
		return -EKEYREJECTED;
	}
	if (rc == CURLE_OK && !f->v.verified) {
		snprintf(why, why_len, "bundle endpoint '%s': not authenticated", url);
		return -EKEYREJECTED;
	}
	if (status && status != 200) {
		snprintf(why, why_len, "bundle endpoint '%s': status %ld, not 200", url, status);
		return -EBADMSG;
	}
	if (f->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(why, why_len, "bundle endpoint '%s': body longer than %zu bytes: aborted",
			 url, f->max);
		return -EFBIG;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(why, why_len, "bundle endpoint '%s': no whole answer within %u ms", url,
			 timeout_ms);
		return -ETIMEDOUT;
	}
	if (rc != CURLE_OK) {
		snprintf(why, why_len, "bundle endpoint '%s': %s", url,
			 errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED
		       : rc == CURLE_OUT_OF_MEMORY ? -ENOMEM
		       : rc == CURLE_COULDNT_RESOLVE_HOST ? -EHOSTUNREACH
		       : rc == CURLE_SSL_CONNECT_ERROR ? -EPROTO
						       : -EIO;
	}
	return 0;
}

static int transfer(const char *url, struct fetch *f, unsigned int timeout_ms, char *why,
		    size_t why_len)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	CURL *c;
	int r;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		snprintf(why, why_len, "libcurl: %s", curl_easy_strerror(curl_init_rc));
		return -ENOMEM;
	}
	c = curl_easy_init();
	if (!c) {
		snprintf(why, why_len, "libcurl: no handle");
		return -ENOMEM;
	}
	r = set_options(c, url, f, timeout_ms, errbuf);
	if (r) {
		snprintf(why, why_len, "libcurl lacks an option fedguard needs (7.85 or later)");
	} else {
		rc = curl_easy_perform(c);
		r = judge_transfer(c, rc, f, url, timeout_ms, errbuf, why, why_len);
	}
	curl_easy_cleanup(c);
	return r;
}

/* --- the result ------------------------------------------------------------------------ */

static bool same_authorities(const struct bundle *a, const struct bundle *b)
{
	int n = sk_X509_num(a->authorities);

	if (a->revoked != b->revoked || n != sk_X509_num(b->authorities))
		return false;
	for (int i = 0; i < n; i++) {
		if (X509_cmp(sk_X509_value(a->authorities, i), sk_X509_value(b->authorities, i)))
			return false;
	}
	return true;
}

/* Never older than the bundle in force, by spiffe_sequence. */
static int check_sequence(const struct bundle *cur, const struct bundle *b, char *why,
			  size_t why_len)
{
	if (!cur->has_sequence)
		return 0;
	if (!b->has_sequence) {
		snprintf(why, why_len, "bundle for '%s': no sequence, %llu in force: refused",
			 cur->td, (unsigned long long)cur->sequence);
		return -ESTALE;
	}
	if (b->sequence < cur->sequence) {
		snprintf(why, why_len, "bundle for '%s': sequence %llu is lower than %llu in force: "
			 "refused", cur->td, (unsigned long long)b->sequence,
			 (unsigned long long)cur->sequence);
		return -ESTALE;
	}
	if (b->sequence == cur->sequence && !same_authorities(cur, b)) {
		snprintf(why, why_len, "bundle for '%s': sequence %llu is the one in force, with other "
			 "keys: refused", cur->td, (unsigned long long)b->sequence);
		return -ESTALE;
	}
	return 0;
}

static int check_args(const char *url, const char *expected_id, const struct bundle *current,
		      const char *td, size_t max_bytes, unsigned int timeout_ms, char *why,
		      size_t why_len)
{
	struct spiffe_id id;

	if (!current || strcmp(current->td, td)) {
		snprintf(why, why_len, "bundle for '%s': no bundle of it in force", td);
		return -EINVAL;
	}
	if (spiffe_parse(expected_id, &id, NULL, 0) || !spiffe_in_trust_domain(&id, td)) {
		snprintf(why, why_len, "bundle for '%s': endpoint ID '%s' is no SPIFFE ID of it",
			 td, expected_id);
		return -EINVAL;
	}
	if (strncasecmp(url, "https://", 8) || !max_bytes || !timeout_ms) {
		snprintf(why, why_len, "bundle for '%s': '%s' is no https URL, or no limits", td,
			 url);
		return -EINVAL;
	}
	if (sk_X509_num(current->authorities) == 0) {
		snprintf(why, why_len, "bundle for '%s': no authorities in force to authenticate "
			 "'%s' with", td, expected_id);
		return -EKEYREJECTED;
	}
	return 0;
}

int bep_fetch(const char *url, const char *expected_id, const struct bundle *current,
	      const char *td, size_t max_bytes, unsigned int timeout_ms, struct bundle **out,
	      char *why, size_t why_len)
{
	struct fetch f = { .td = td, .expected_id = expected_id, .current = current,
			   .max = max_bytes };
	_cleanup_free_ char *body = NULL;
	_cleanup_bundle_ struct bundle *b = NULL;
	int r;

	r = check_args(url, expected_id, current, td, max_bytes, timeout_ms, why, why_len);
	if (r)
		return r;
	r = transfer(url, &f, timeout_ms, why, why_len);
	body = f.body;
	if (r)
		return r;
	r = bundle_parse(td, body ? body : "", f.len, &b, why, why_len);
	if (r)
		return r == -ENOMEM ? r : -EBADMSG;
	r = check_sequence(current, b, why, why_len);
	if (r)
		return r;
	*out = take_ptr(b);
	return 0;
}

/* --- when to fetch --------------------------------------------------------------------- */

time_t bep_next_refresh(const struct bundle *b, time_t now)
{
	uint64_t hint = b && b->has_refresh_hint ? b->refresh_hint : BEP_REFRESH_DEFAULT;

	if (hint < BEP_REFRESH_MIN)
		hint = BEP_REFRESH_MIN;
	if (hint > BEP_REFRESH_MAX)
		hint = BEP_REFRESH_MAX;
	return now + (time_t)hint;
}

struct bep_kick_td {
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	time_t last;
};

struct bep_kick {
	unsigned int interval;
	struct bep_kick_td *tds;
	size_t n, cap;
};

int bep_kick_new(unsigned int interval, struct bep_kick **out)
{
	struct bep_kick *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->interval = interval ? interval : BEP_KICK_INTERVAL;
	*out = k;
	return 0;
}

void bep_kick_free(struct bep_kick *k)
{
	if (k)
		free(k->tds);
	free(k);
}

static struct bep_kick_td *kick_find(struct bep_kick *k, const char *td)
{
	for (size_t i = 0; i < k->n; i++) {
		if (!strcmp(k->tds[i].td, td))
			return &k->tds[i];
	}
	return NULL;
}

bool bep_kick_allow(struct bep_kick *k, const char *td, time_t now)
{
	struct bep_kick_td *t = kick_find(k, td);

	if (strlen(td) > SPIFFE_TRUST_DOMAIN_MAX)
		return false;
	if (t) {
		/* a clock that went back counts as a fetch just made */
		if (now >= t->last && now - t->last < (time_t)k->interval)
			return false;
		if (now < t->last && t->last - now < (time_t)k->interval)
			return false;
		t->last = now;
		return true;
	}
	if (k->n == BEP_KICK_TDS_MAX)
		return false;
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 8;
		struct bep_kick_td *p = reallocarray(k->tds, cap, sizeof(*p));

		if (!p)
			return false;
		k->tds = p;
		k->cap = cap;
	}
	t = &k->tds[k->n++];
	snprintf(t->td, sizeof(t->td), "%s", td);
	t->last = now;
	return true;
}

void bep_kick_forget(struct bep_kick *k, const char *td)
{
	struct bep_kick_td *t = kick_find(k, td);

	if (t)
		*t = k->tds[--k->n];
}

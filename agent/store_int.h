/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by store.c and store_watch.c; not for other modules. */
#ifndef FEDGUARD_STORE_INT_H
#define FEDGUARD_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "curl_svid.h"
#include "store.h"

struct store {
	char *urls[STORE_URLS_MAX];
	unsigned int n_urls;
	unsigned int cur;	/* the URL that answered last */
	char *cert_file, *key_file, *ca_file;
	struct store_tls tls;	/* take, put, ctx, server_id (a copy) */
	long connect_ms, total_ms;
	CURL *curl;		/* of the owner's thread; watches have their own */
	char err[256];
};

/* One transfer's TLS: what store_tls.take gave, and the server's verdict. */
struct store_session {
	struct store_cred cred;
	bool taken;
	struct curl_svid v;
};

/*
 * Options common to every transfer: TLS, connect timeout, no signals.
 * With a credential provider, sess holds what the transfer borrows: call
 * store_session_end() once curl_easy_perform() returned. 0 or -errno.
 */
int store_curl_common(const struct store *s, CURL *c, struct store_session *sess);

/*
 * Gives the credential back; when the server's SVID was refused, writes why
 * to err (err_len bytes) and returns -EKEYREJECTED, else r.
 */
int store_session_end(const struct store *s, struct store_session *sess, int r, char *err,
		      size_t err_len);

/* A CURLcode of a transfer as a negative errno. */
int store_curl_errno(CURLcode rc);

/* Base64 of len bytes, NUL-terminated, to free(). NULL when out of memory. */
char *store_b64(const void *p, size_t len);

/* Decodes text; *out (to free(), NUL-terminated past *len). -EBADMSG, -ENOMEM. */
int store_unb64(const char *text, void **out, size_t *len);

/* Member name of o as an int64 (the gateway writes them as strings); absent is 0. */
int store_json_i64(struct json_object *o, const char *name, int64_t *out);

/* Adds "key" and "range_end" (the end of everything under prefix). */
int store_json_prefix(struct json_object *req, const char *prefix);

/* A KV object of the gateway decoded: key (NUL-free), value, mod_revision. */
int store_json_kv(struct json_object *kv, char **key, void **value, size_t *len, int64_t *rev);

#endif /* FEDGUARD_STORE_INT_H */

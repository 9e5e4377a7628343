// SPDX-License-Identifier: Apache-2.0
/*
 * The mesh state store client: requests to etcd's v3 JSON gateway. Every
 * request is a POST of a JSON body to /v3/<service>/<call>; the answer is a
 * JSON object, or {"error": ..., "code": ...} with a non-200 status. etcd
 * writes int64 fields as JSON strings and omits fields at their zero value.
 */
#define _GNU_SOURCE
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cleanup.h"
#include "json_strict.h"
#include "log.h"
#include "store_int.h"

enum {
	STORE_JSON_DEPTH = 16,
};

static void cleanup_json(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(cleanup_json)))

struct store_buf {
	char *p;
	size_t len;
};

static pthread_once_t store_curl_once = PTHREAD_ONCE_INIT;
static CURLcode store_curl_init_rc;

static void store_curl_init(void)
{
	store_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

char *store_b64(const void *p, size_t len)
{
	char *out;

	if (len > (size_t)INT32_MAX / 2)
		return NULL;
	out = malloc(4 * ((len + 2) / 3) + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, p, (int)len);
	return out;
}

int store_unb64(const char *text, void **out, size_t *len)
{
	size_t n = strlen(text), pad = 0;
	unsigned char *buf;
	int r;

	if (n % 4 != 0 || n > (size_t)INT32_MAX)
		return -EBADMSG;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	r = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)n);
	if (r < 0) {
		free(buf);
		return -EBADMSG;
	}
	/* EVP_DecodeBlock counts the bytes of the padding as zeros. */
	if (n > 0 && text[n - 1] == '=')
		pad++;
	if (n > 1 && text[n - 2] == '=')
		pad++;
	buf[r - pad] = 0;
	*len = r - pad;
	*out = buf;
	return 0;
}

int store_json_i64(struct json_object *o, const char *name, int64_t *out)
{
	struct json_object *v;
	const char *str;
	char *end;
	long long n;

	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) {
		*out = 0;
		return 0;
	}
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -EBADMSG;
	str = json_object_get_string(v);
	errno = 0;
	n = strtoll(str, &end, 10);
	if (errno || end == str || *end)
		return -EBADMSG;
	*out = n;
	return 0;
}

static int json_add_str(struct json_object *o, const char *name, const char *val)
{
	struct json_object *v = json_object_new_string(val);

	if (!v || json_object_object_add(o, name, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int json_add_b64(struct json_object *o, const char *name, const void *p, size_t len)
{
	_cleanup_free_ char *b = store_b64(p, len);

	if (!b)
		return -ENOMEM;
	return json_add_str(o, name, b);
}

static int json_add_i64(struct json_object *o, const char *name, int64_t val)
{
	struct json_object *v = json_object_new_int64(val);

	if (!v || json_object_object_add(o, name, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

int store_json_prefix(struct json_object *req, const char *prefix)
{
	size_t n = strlen(prefix);
	_cleanup_free_ unsigned char *end = malloc(n + 1);
	size_t i = n;
	int r;

	if (!end)
		return -ENOMEM;
	memcpy(end, prefix, n);
	/* The first key after every key that starts with prefix: drop the
	 * trailing 0xff bytes, add one to the last byte left. With none left,
	 * "\0", which etcd reads as "to the end of the key space". */
	while (i > 0 && end[i - 1] == 0xff)
		i--;
	if (i == 0) {
		end[0] = 0;
		i = 1;
	} else {
		end[i - 1]++;
	}
	r = json_add_b64(req, "key", prefix, n);
	if (r < 0)
		return r;
	return json_add_b64(req, "range_end", end, i);
}

int store_json_kv(struct json_object *kv, char **key, void **value, size_t *len, int64_t *rev)
{
	struct json_object *k, *v;
	_cleanup_free_ void *kb = NULL;
	_cleanup_free_ void *vb = NULL;
	size_t klen, vlen = 0;
	int64_t mod;
	int r;

	if (!json_object_is_type(kv, json_type_object) ||
	    !json_object_object_get_ex(kv, "key", &k) || !json_object_is_type(k, json_type_string))
		return -EBADMSG;
	r = store_unb64(json_object_get_string(k), &kb, &klen);
	if (r < 0)
		return r;
	if (memchr(kb, 0, klen))
		return -EBADMSG;
	if (json_object_object_get_ex(kv, "value", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return -EBADMSG;
		r = store_unb64(json_object_get_string(v), &vb, &vlen);
	} else {
		vb = calloc(1, 1);
		r = vb ? 0 : -ENOMEM;
	}
	if (r < 0)
		return r;
	r = store_json_i64(kv, "mod_revision", &mod);
	if (r < 0)
		return r;
	*key = take_ptr(kb);
	*value = take_ptr(vb);
	*len = vlen;
	*rev = mod;
	return 0;
}

static size_t store_write(char *data, size_t size, size_t n, void *ctx)
{
	struct store_buf *b = ctx;
	size_t add = size * n;
	char *p;

	if (add > STORE_BODY_MAX - b->len)
		return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
	p = realloc(b->p, b->len + add + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, data, add);
	b->len += add;
	p[b->len] = 0;
	b->p = p;
	return add;
}

/* The provider's credential as curl blobs, and the server judged by its SVID. */
static int store_curl_cred(const struct store *s, CURL *c, struct store_session *sess)
{
	struct curl_blob cert, key;
	int r = s->tls.take(s->tls.ctx, &sess->cred);

	if (r)
		return r;
	sess->taken = true;
	cert = (struct curl_blob){ .data = (void *)sess->cred.cert_pem,
				   .len = sess->cred.cert_len, .flags = CURL_BLOB_COPY };
	key = (struct curl_blob){ .data = (void *)sess->cred.key_pem, .len = sess->cred.key_len,
				  .flags = CURL_BLOB_COPY };
	if (curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK)
		return -EINVAL;
	sess->v = (struct curl_svid){ .trust = sess->cred.trust, .expected_id = s->tls.server_id };
	return curl_svid_setup(c, &sess->v);
}

int store_curl_common(const struct store *s, CURL *c, struct store_session *sess)
{
	*sess = (struct store_session){};
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");	/* no proxy from the environment */
	if (s->cert_file) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, s->cert_file);
		curl_easy_setopt(c, CURLOPT_SSLKEY, s->key_file);
		curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_file);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	} else if (s->tls.take) {
		return store_curl_cred(s, c, sess);
	}
	return 0;
}

int store_session_end(const struct store *s, struct store_session *sess, int r, char *err,
		      size_t err_len)
{
	if (sess->taken)
		s->tls.put(s->tls.ctx, &sess->cred);
	sess->taken = false;
	if (sess->v.rejected) {
		snprintf(err, err_len, "the store's SVID is rejected (%s): %s",
			 sess->v.rejected > 0 ? svid_reason_name(sess->v.rejected)
					      : strerror(-sess->v.rejected),
			 sess->v.why);
		return -EKEYREJECTED;
	}
	return r;
}

int store_curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_WRITE_ERROR:
		return -EFBIG;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
		return -EPROTO;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_ABORTED_BY_CALLBACK:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

/* One POST to one URL: the status and the body of the answer. */
static int store_post(struct store *s, const char *url, const char *path, const char *body,
		      long *status, struct store_buf *resp)
{
	_cleanup_free_ char *full = NULL;
	struct store_session sess;
	struct curl_slist *hdr;
	CURLcode rc;
	int r;

	if (asprintf(&full, "%s%s", url, path) < 0)
		return -ENOMEM;
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	if (!hdr)
		return -ENOMEM;
	curl_easy_reset(s->curl);
	r = store_curl_common(s, s->curl, &sess);
	if (r) {
		curl_slist_free_all(hdr);
		store_session_end(s, &sess, r, s->err, sizeof(s->err));
		return log_debug_errno(r, "store '%s': no TLS credential", full);
	}
	curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, s->total_ms);
	curl_easy_setopt(s->curl, CURLOPT_URL, full);
	curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, store_write);
	curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, resp);
	rc = curl_easy_perform(s->curl);
	curl_slist_free_all(hdr);
	r = store_session_end(s, &sess, store_curl_errno(rc), s->err, sizeof(s->err));
	if (r < 0)
		return log_debug_errno(r, "store '%s': %s", full,
				       r == -EKEYREJECTED ? s->err : curl_easy_strerror(rc));
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, status);
	return 0;
}

/*
 * gRPC status codes of answers that say "not now" rather than "no": the
 * request may succeed when tried again (an etcd starting, stopping or
 * without a leader).
 */
enum {
	GRPC_CANCELLED = 1,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_ABORTED = 10,
	GRPC_UNAVAILABLE = 14,
};

static bool store_transient(long status, int64_t code)
{
	return status >= 500 || code == GRPC_CANCELLED || code == GRPC_DEADLINE_EXCEEDED ||
	       code == GRPC_ABORTED || code == GRPC_UNAVAILABLE;
}

/*
 * The gateway's {"error": ..., "code": ...} with its message kept: -EAGAIN
 * when it may pass when tried again, -EIO otherwise.
 */
static int store_gateway_error(struct store *s, const char *path, long status,
			       struct json_object *doc)
{
	struct json_object *e = NULL;
	int64_t code = 0;

	if (doc)
		json_object_object_get_ex(doc, "error", &e);
	if (doc && !e)
		json_object_object_get_ex(doc, "message", &e);
	if (doc)
		store_json_i64(doc, "code", &code);
	snprintf(s->err, sizeof(s->err), "%s (HTTP %ld, code %lld)",
		 e && json_object_is_type(e, json_type_string) ? json_object_get_string(e)
							       : "no message",
		 status, (long long)code);
	log_debug("store '%s%s': error answer: %s", s->urls[s->cur], path, s->err);
	return store_transient(status, code) ? -EAGAIN : -EIO;
}

/*
 * Sends req to path at each URL in turn, from the one that answered last,
 * until one answers; parses the answer into *out.
 */
static int store_call(struct store *s, const char *path, struct json_object *req,
		      struct json_object **out)
{
	const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	_cleanup_json_ struct json_object *doc = NULL;
	struct store_buf resp = {};
	long status = 0;
	char why[128];
	int r = -ECONNREFUSED;

	s->err[0] = 0;
	for (unsigned int i = 0; i < s->n_urls; i++) {
		unsigned int idx = (s->cur + i) % s->n_urls;

		free(resp.p);
		resp = (struct store_buf){};
		r = store_post(s, s->urls[idx], path, body, &status, &resp);
		if (r == 0) {
			s->cur = idx;
			break;
		}
		if (r == -ENOMEM || r == -EFBIG)
			break;
	}
	if (r < 0) {
		free(resp.p);
		return r;
	}
	r = json_strict_parse(resp.p ? resp.p : "", resp.len, STORE_JSON_DEPTH, &doc, why,
			      sizeof(why));
	free(resp.p);
	if (r < 0 || !json_object_is_type(doc, json_type_object)) {
		snprintf(s->err, sizeof(s->err), "HTTP %ld: %s", status,
			 r < 0 ? why : "not a JSON object");
		log_debug("store '%s%s': bad answer: %s", s->urls[s->cur], path, s->err);
		return status == 200 ? -EBADMSG : status >= 500 ? -EAGAIN : -EIO;
	}
	if (status != 200 || json_object_object_get_ex(doc, "error", NULL))
		return store_gateway_error(s, path, status, doc);
	*out = take_ptr(doc);
	return 0;
}

static int store_add_url(struct store *s, const char *url, size_t n)
{
	bool https = n > 8 && strncmp(url, "https://", 8) == 0;
	bool http = n > 7 && strncmp(url, "http://", 7) == 0;

	if (s->n_urls == STORE_URLS_MAX)
		return log_debug_errno(-EINVAL, "store: more than %d URLs", STORE_URLS_MAX);
	if (!http && !https)
		return log_debug_errno(-EINVAL, "store URL '%.*s': not http:// or https://", (int)n,
				       url);
	if (https && !s->cert_file && !s->tls.take)
		return log_debug_errno(-EINVAL, "store URL '%.*s': https needs TLS files", (int)n,
				       url);
	while (n > 0 && url[n - 1] == '/')
		n--;
	s->urls[s->n_urls] = strndup(url, n);
	if (!s->urls[s->n_urls])
		return -ENOMEM;
	s->n_urls++;
	return 0;
}

static int store_set_tls(struct store *s, const struct store_tls *tls)
{
	if (!tls)
		return 0;
	if (tls->take) {
		if (!tls->put)
			return log_debug_errno(-EINVAL, "store: a credential provider needs put()");
		s->tls = *tls;
		s->tls.server_id = tls->server_id ? strdup(tls->server_id) : NULL;
		return tls->server_id && !s->tls.server_id ? -ENOMEM : 0;
	}
	if (!tls->cert_file || !tls->key_file || !tls->ca_file)
		return log_debug_errno(-EINVAL, "store: TLS needs a certificate, a key and CA roots");
	s->cert_file = strdup(tls->cert_file);
	s->key_file = strdup(tls->key_file);
	s->ca_file = strdup(tls->ca_file);
	if (!s->cert_file || !s->key_file || !s->ca_file)
		return -ENOMEM;
	return 0;
}

int store_open(const char *urls, const struct store_tls *tls, struct store **out)
{
	struct store *s;
	const char *p = urls;
	int r;

	pthread_once(&store_curl_once, store_curl_init);
	if (store_curl_init_rc != CURLE_OK)
		return log_debug_errno(-EIO, "store: libcurl: %s",
				       curl_easy_strerror(store_curl_init_rc));
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->connect_ms = STORE_CONNECT_TIMEOUT_MS;
	s->total_ms = STORE_TIMEOUT_MS;
	r = store_set_tls(s, tls);
	while (r == 0 && *p) {
		size_t n = strcspn(p, ",");

		r = store_add_url(s, p, n);
		p += n + (p[n] == ',');
	}
	if (r == 0 && s->n_urls == 0)
		r = log_debug_errno(-EINVAL, "store: no URL in '%s'", urls);
	s->curl = r == 0 ? curl_easy_init() : NULL;
	if (r == 0 && !s->curl)
		r = -ENOMEM;
	if (r < 0) {
		store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (unsigned int i = 0; i < s->n_urls; i++)
		free(s->urls[i]);
	free(s->cert_file);
	free(s->key_file);
	free(s->ca_file);
	free((char *)s->tls.server_id);
	if (s->curl)
		curl_easy_cleanup(s->curl);
	free(s);
}

void store_set_timeouts(struct store *s, long connect_ms, long total_ms)
{
	s->connect_ms = connect_ms;
	s->total_ms = total_ms;
}

const char *store_last_error(const struct store *s)
{
	return s->err;
}

int store_put(struct store *s, const char *key, const void *value, size_t len, int64_t lease_id)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	_cleanup_json_ struct json_object *resp = NULL;
	int r;

	if (!req)
		return -ENOMEM;
	r = json_add_b64(req, "key", key, strlen(key));
	if (r == 0)
		r = json_add_b64(req, "value", value, len);
	if (r == 0 && lease_id)
		r = json_add_i64(req, "lease", lease_id);
	if (r < 0)
		return r;
	return store_call(s, "/v3/kv/put", req, &resp);
}

/* {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": rev} */
static struct json_object *store_compare_mod(const char *key, int64_t rev)
{
	struct json_object *c = json_object_new_object();

	if (!c || json_add_b64(c, "key", key, strlen(key)) || json_add_str(c, "target", "MOD") ||
	    json_add_str(c, "result", "EQUAL") || json_add_i64(c, "mod_revision", rev)) {
		json_object_put(c);
		return NULL;
	}
	return c;
}

int store_put_if(struct store *s, const char *key, const void *value, size_t len,
		 int64_t mod_revision)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	_cleanup_json_ struct json_object *resp = NULL;
	struct json_object *cmp = store_compare_mod(key, mod_revision);
	struct json_object *put = json_object_new_object(), *op = json_object_new_object();
	struct json_object *cmps = json_object_new_array(), *ops = json_object_new_array(), *ok;
	int r = -ENOMEM;

	if (req && cmp && put && op && cmps && ops && json_add_b64(put, "key", key, strlen(key)) == 0 &&
	    json_add_b64(put, "value", value, len) == 0) {
		json_object_array_add(cmps, take_ptr(cmp));
		json_object_object_add(op, "request_put", take_ptr(put));
		json_object_array_add(ops, take_ptr(op));
		json_object_object_add(req, "compare", take_ptr(cmps));
		json_object_object_add(req, "success", take_ptr(ops));
		r = 0;
	}
	json_object_put(cmp);
	json_object_put(put);
	json_object_put(op);
	json_object_put(cmps);
	json_object_put(ops);
	if (r < 0)
		return r;
	r = store_call(s, "/v3/kv/txn", req, &resp);
	if (r < 0)
		return r;
	/* "succeeded" is omitted when false, its zero value */
	if (!json_object_object_get_ex(resp, "succeeded", &ok))
		return -ECANCELED;
	if (!json_object_is_type(ok, json_type_boolean))
		return -EBADMSG;
	return json_object_get_boolean(ok) ? 0 : -ECANCELED;
}

/* A range request; the answer's kvs array and header revision. */
static int store_range(struct store *s, struct json_object *req, struct json_object **resp,
		       struct json_object **kvs, int64_t *revision)
{
	struct json_object *hdr;
	int r;

	r = store_call(s, "/v3/kv/range", req, resp);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(*resp, "header", &hdr) ||
	    store_json_i64(hdr, "revision", revision) < 0)
		return -EBADMSG;
	if (!json_object_object_get_ex(*resp, "kvs", kvs))
		*kvs = NULL;
	else if (!json_object_is_type(*kvs, json_type_array))
		return -EBADMSG;
	return 0;
}

int store_get(struct store *s, const char *key, void **value, size_t *len, int64_t *mod_revision)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	_cleanup_json_ struct json_object *resp = NULL;
	_cleanup_free_ char *k = NULL;
	struct json_object *kvs;
	int64_t rev;
	int r;

	if (!req)
		return -ENOMEM;
	r = json_add_b64(req, "key", key, strlen(key));
	if (r == 0)
		r = store_range(s, req, &resp, &kvs, &rev);
	if (r < 0)
		return r;
	if (!kvs || json_object_array_length(kvs) == 0)
		return -ENOENT;
	return store_json_kv(json_object_array_get_idx(kvs, 0), &k, value, len, mod_revision);
}

/* Calls fn for each KV of kvs; the last key goes to *last (to free()). */
static int store_list_page(struct json_object *kvs, store_kv_fn fn, void *ctx, char **last)
{
	size_t n = kvs ? json_object_array_length(kvs) : 0;

	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *key = NULL;
		_cleanup_free_ void *val = NULL;
		size_t len;
		int64_t mod;
		int r;

		r = store_json_kv(json_object_array_get_idx(kvs, i), &key, &val, &len, &mod);
		if (r < 0)
			return r;
		r = fn(ctx, key, val, len, mod);
		if (r != 0)
			return r;
		if (i == n - 1) {
			free(*last);
			*last = take_ptr(key);
		}
	}
	return 0;
}

int store_list(struct store *s, const char *prefix, store_kv_fn fn, void *ctx, int64_t *revision)
{
	_cleanup_free_ char *last = NULL;
	int64_t rev = 0;
	bool more = true;
	int r = 0;

	/* Pages of STORE_PAGE keys, all at the first page's revision: one snapshot. */
	while (more && r == 0) {
		_cleanup_json_ struct json_object *req = json_object_new_object();
		_cleanup_json_ struct json_object *resp = NULL;
		struct json_object *kvs, *m;
		int64_t page_rev;

		if (!req)
			return -ENOMEM;
		r = store_json_prefix(req, prefix);
		if (r == 0 && last) {
			/* from the key right after the last one: last + "\0" */
			json_object_object_del(req, "key");
			r = json_add_b64(req, "key", last, strlen(last) + 1);
		}
		if (r == 0)
			r = json_add_i64(req, "limit", STORE_PAGE);
		if (r == 0 && rev)
			r = json_add_i64(req, "revision", rev);
		if (r == 0)
			r = store_range(s, req, &resp, &kvs, &page_rev);
		if (r < 0)
			return r;
		rev = rev ? rev : page_rev;
		more = json_object_object_get_ex(resp, "more", &m) && json_object_get_boolean(m);
		r = store_list_page(kvs, fn, ctx, &last);
		if (more && !last)
			return -EBADMSG;
	}
	if (r == 0)
		*revision = rev;
	return r;
}

static int store_delete_req(struct store *s, struct json_object *req)
{
	_cleanup_json_ struct json_object *resp = NULL;
	int64_t deleted;
	int r;

	r = store_call(s, "/v3/kv/deleterange", req, &resp);
	if (r < 0)
		return r;
	if (store_json_i64(resp, "deleted", &deleted) < 0 || deleted < 0 || deleted > INT32_MAX)
		return -EBADMSG;
	return (int)deleted;
}

int store_delete(struct store *s, const char *key)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	int r;

	if (!req)
		return -ENOMEM;
	r = json_add_b64(req, "key", key, strlen(key));
	if (r < 0)
		return r;
	return store_delete_req(s, req);
}

int store_delete_prefix(struct store *s, const char *prefix)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	int r;

	if (!req)
		return -ENOMEM;
	r = store_json_prefix(req, prefix);
	if (r < 0)
		return r;
	return store_delete_req(s, req);
}

/* A request whose only member is "ID" (or "TTL"): the leases' calls. */
static int store_lease_call(struct store *s, const char *path, const char *name, int64_t val,
			    struct json_object **resp)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	int r;

	if (!req)
		return -ENOMEM;
	r = json_add_i64(req, name, val);
	if (r < 0)
		return r;
	return store_call(s, path, req, resp);
}

int store_lease_grant(struct store *s, int64_t ttl_seconds, int64_t *lease_id)
{
	_cleanup_json_ struct json_object *resp = NULL;
	int64_t id;
	int r;

	if (ttl_seconds <= 0)
		return -EINVAL;
	r = store_lease_call(s, "/v3/lease/grant", "TTL", ttl_seconds, &resp);
	if (r < 0)
		return r;
	if (store_json_i64(resp, "ID", &id) < 0 || id == 0)
		return -EBADMSG;
	*lease_id = id;
	return 0;
}

int store_lease_keepalive(struct store *s, int64_t lease_id)
{
	_cleanup_json_ struct json_object *resp = NULL;
	struct json_object *result;
	int64_t ttl;
	int r;

	r = store_lease_call(s, "/v3/lease/keepalive", "ID", lease_id, &resp);
	if (r < 0)
		return r;
	/* The gateway streams the answers of the keepalive: {"result": {...}} */
	if (!json_object_object_get_ex(resp, "result", &result) ||
	    store_json_i64(result, "TTL", &ttl) < 0)
		return -EBADMSG;
	return ttl > 0 ? 0 : -ENOENT;
}

int store_lease_revoke(struct store *s, int64_t lease_id)
{
	_cleanup_json_ struct json_object *resp = NULL;
	int r;

	r = store_lease_call(s, "/v3/lease/revoke", "ID", lease_id, &resp);
	if (r == -EIO && strstr(s->err, "not found"))
		return -ENOENT;
	return r;
}

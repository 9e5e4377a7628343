// SPDX-License-Identifier: Apache-2.0
/*
 * The bundle endpoint server (bundle_endpoint.h). One worker thread
 * accepts and serves connections one at a time; the listening socket and an
 * eventfd that says "stop" are all it waits on between connections. The
 * connection being served is published under the lock so that
 * bep_server_stop() can shut it down instead of waiting for its deadline.
 */
#define _GNU_SOURCE
#include "bundle_endpoint.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <openssl/ssl.h>

#include "cleanup.h"
#include "io.h"
#include "listener.h"
#include "log.h"
#include "metrics_http.h"
#include "tls.h"

enum status_index {
	ST_200,
	ST_400,
	ST_404,
	ST_405,
	ST_431,
	ST_503,
};

static const struct {
	int code;
	const char *text;
} statuses[] = {
	[ST_200] = { 200, "OK" },
	[ST_400] = { 400, "Bad Request" },
	[ST_404] = { 404, "Not Found" },
	[ST_405] = { 405, "Method Not Allowed" },
	[ST_431] = { 431, "Request Header Fields Too Large" },
	[ST_503] = { 503, "Service Unavailable" },
};

struct bep_server {
	SSL_CTX *ctx;
	struct listener listen;	/* serves one connection at a time, on its thread */
	unsigned int timeout_ms;

	pthread_mutex_t lock; /* guards what follows */
	bool stopping;
	int conn_fd;	      /* the connection being served, or -1 */
	X509 *cert;
	EVP_PKEY *key;
	STACK_OF(X509) *chain;
	char *json;
	struct bep_server_stats stats;
};

/* --- setting up ------------------------------------------------------------------- */

static int listen_on(struct bep_server *s, const char *spec, char *why, size_t why_len)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r;

	if (metrics_http_parse_listen(spec, &ss, &len)) {
		snprintf(why, why_len, "bundle endpoint: '%s' is not ADDR:PORT or [ADDR]:PORT",
			 spec);
		return -EINVAL;
	}
	r = listener_open(&s->listen, &ss, len, 16);
	if (r)
		snprintf(why, why_len, "bundle endpoint: cannot listen on '%s': %s", spec,
			 strerror(-r));
	return r;
}

/* TLS 1.2 at least, as the https_spiffe profile allows; OpenSSL prefers 1.3. */
static int ctx_init(struct bep_server *s, char *why, size_t why_len)
{
	s->ctx = SSL_CTX_new(TLS_server_method());
	if (!s->ctx || SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION) != 1) {
		snprintf(why, why_len, "bundle endpoint: no TLS context: %s", tls_error());
		return -ENOMEM;
	}
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(s->ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	return 0;
}

int bep_server_set_cred(struct bep_server *s, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			char *why, size_t why_len)
{
	STACK_OF(X509) *copy = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();

	if (!cert || !key || X509_check_private_key(cert, key) != 1) {
		sk_X509_pop_free(copy, X509_free);
		snprintf(why, why_len, "bundle endpoint: the key is not the SVID's key");
		return -EINVAL;
	}
	if (!copy || !X509_up_ref(cert) || !EVP_PKEY_up_ref(key)) {
		sk_X509_pop_free(copy, X509_free);
		snprintf(why, why_len, "bundle endpoint: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->lock);
	X509_free(s->cert);
	EVP_PKEY_free(s->key);
	sk_X509_pop_free(s->chain, X509_free);
	s->cert = cert;
	s->key = key;
	s->chain = copy;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int bep_server_set_bundle(struct bep_server *s, const char *json)
{
	char *copy = strdup(json);

	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	free(s->json);
	s->json = copy;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* --- one connection ----------------------------------------------------------------- */

/* Reads the request head: ST_200 when complete (to be classified), ST_431, or -errno. */
static int read_head(SSL *ssl, char *buf, size_t *len, int64_t deadline)
{
	size_t n = 0;
	int r;

	/* every pass reads at least a byte into a bounded buffer, or ends */
	while (n < BEP_REQUEST_MAX) {
		r = tls_do(ssl, TLS_READ, buf + n, (int)(BEP_REQUEST_MAX - n), deadline);
		if (r < 0)
			return r;
		n += (size_t)r;
		buf[n] = 0;
		if (strstr(buf, "\r\n\r\n")) {
			*len = n;
			return ST_200;
		}
	}
	return ST_431;
}

/* The answer to a complete request head. */
static enum status_index classify(const char *head, bool have_json)
{
	const char *sp1 = strchr(head, ' ');
	const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	const char *eol = strstr(head, "\r\n");

	if (!sp1 || !sp2 || sp2 > eol || eol - sp2 != 9 || strncmp(sp2 + 1, "HTTP/1.", 7))
		return ST_400;
	if (sp1 - head != 3 || strncmp(head, "GET", 3))
		return ST_405;
	if (sp2 - sp1 != 2 || sp1[1] != '/')
		return ST_404;
	return have_json ? ST_200 : ST_503;
}

static int respond(SSL *ssl, enum status_index st, const char *json, int64_t deadline)
{
	const char *body = st == ST_200 ? json : statuses[st].text;
	_cleanup_free_ char *msg = NULL;
	int len;

	len = asprintf(&msg,
		       "HTTP/1.1 %d %s\r\n"
		       "Content-Type: %s\r\n"
		       "Content-Length: %zu\r\n"
		       "%s"
		       "Cache-Control: no-store\r\n"
		       "Connection: close\r\n"
		       "\r\n%s%s",
		       statuses[st].code, statuses[st].text,
		       st == ST_200 ? "application/json" : "text/plain",
		       strlen(body) + (st == ST_200 ? 0 : 1), st == ST_405 ? "Allow: GET\r\n" : "",
		       body, st == ST_200 ? "" : "\n");
	if (len < 0)
		return -ENOMEM;
	return tls_io_all(ssl, TLS_WRITE, msg, len, deadline);
}

/* Takes references to what a connection presents and serves, under the lock. */
static int conn_prepare(struct bep_server *s, SSL *ssl, int fd, char **json)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (SSL_set_fd(ssl, fd) != 1 ||
	    SSL_use_cert_and_key(ssl, s->cert, s->key, s->chain, 1) != 1)
		r = -ENOMEM;
	else if (s->json && !(*json = strdup(s->json)))
		r = -ENOMEM;
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void count(struct bep_server *s, int st)
{
	pthread_mutex_lock(&s->lock);
	if (st >= 0)
		s->stats.responses[st]++;
	else
		s->stats.failed++;
	pthread_mutex_unlock(&s->lock);
}

static void serve(struct bep_server *s, int fd)
{
	int64_t deadline = io_now_ms() + s->timeout_ms;
	_cleanup_free_ char *json = NULL;
	char head[BEP_REQUEST_MAX + 1];
	size_t len = 0;
	SSL *ssl = SSL_new(s->ctx);
	int st;

	st = ssl ? conn_prepare(s, ssl, fd, &json) : -ENOMEM;
	if (!st) {
		SSL_set_accept_state(ssl);
		st = tls_do(ssl, TLS_HANDSHAKE, NULL, 0, deadline);
	}
	if (st >= 0)
		st = read_head(ssl, head, &len, deadline);
	if (st == ST_200)
		st = classify(head, json != NULL);
	if (st >= 0 && respond(ssl, st, json, deadline))
		st = -EPIPE;
	if (st < 0)
		log_debug("bundle endpoint: connection ended without a response: %s",
			  st == -ETIMEDOUT ? "timed out" : tls_error());
	count(s, st);
	if (ssl)
		SSL_shutdown(ssl); /* best effort: non-blocking, never waits */
	SSL_free(ssl);
}

/* --- the worker --------------------------------------------------------------------- */

/* Publishes the connection for bep_server_stop(): false when the server is stopping. */
static bool set_conn(struct bep_server *s, int fd)
{
	bool stopping;

	pthread_mutex_lock(&s->lock);
	s->conn_fd = fd;
	stopping = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return !stopping;
}

/* One connection, served to its end before the next is accepted. */
static void on_accept(void *ctx, int fd, const struct sockaddr_storage *from, socklen_t len)
{
	struct bep_server *s = ctx;

	(void)from, (void)len;
	if (set_conn(s, fd))
		serve(s, fd);
	set_conn(s, -1);
	close(fd);
}

int bep_server_start(const struct bep_server_config *cfg, struct bep_server **out, char *why,
		     size_t why_len)
{
	struct bep_server *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	listener_init(&s->listen);
	s->conn_fd = -1;
	s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : BEP_TIMEOUT_MS;
	pthread_mutex_init(&s->lock, NULL);
	r = ctx_init(s, why, why_len);
	if (!r)
		r = bep_server_set_cred(s, cfg->cert, cfg->key, cfg->chain, why, why_len);
	if (!r && cfg->bundle_json && bep_server_set_bundle(s, cfg->bundle_json))
		r = -ENOMEM;
	if (!r)
		r = listen_on(s, cfg->listen, why, why_len);
	if (!r) {
		r = listener_start(&s->listen, on_accept, s);
		if (r)
			snprintf(why, why_len, "bundle endpoint: no thread: %s", strerror(-r));
	}
	if (r) {
		bep_server_stop(s);
		return r;
	}
	*out = s;
	return 0;
}

void bep_server_stop(struct bep_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	if (s->conn_fd >= 0)
		shutdown(s->conn_fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	listener_close(&s->listen);
	SSL_CTX_free(s->ctx);
	X509_free(s->cert);
	EVP_PKEY_free(s->key);
	sk_X509_pop_free(s->chain, X509_free);
	free(s->json);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

__u16 bep_server_port(const struct bep_server *s)
{
	return s->listen.port;
}

void bep_server_stats(struct bep_server *s, struct bep_server_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
}

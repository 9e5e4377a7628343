// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "rogue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "spiffe.h"

enum {
	ROGUE_TIMEOUT_S = 5,
};

/* --- sockets --------------------------------------------------------------------------------- */

void at_addr(const char *ip, __u16 port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &sin6->sin6_addr);
		*len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, ip, &sin->sin_addr);
		*len = sizeof(*sin);
	}
}

int at_listen(const char *ip, __u16 port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd;

	at_addr(ip, port, &ss, &len);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 16)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = ROGUE_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int accept_any(X509_STORE_CTX *ctx, void *arg)
{
	return 1;
}

/* A blocking TLS 1.3 context presenting cert (with chain; NULL: no certificate). */
static SSL_CTX *rogue_ctx(bool server, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!c)
		return NULL;
	SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(c, accept_any, NULL);
	if (cert && SSL_CTX_use_cert_and_key(c, cert, key, chain, 1) != 1) {
		SSL_CTX_free(c);
		return NULL;
	}
	return c;
}

/* --- the hostile asker ----------------------------------------------------------------------- */

static int rogue_connect(const struct at_peer *p)
{
	int fd = socket(p->to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	if ((p->from_len && bind(fd, (const struct sockaddr *)&p->from, p->from_len)) ||
	    connect(fd, (const struct sockaddr *)&p->to, p->to_len)) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* The request of auth.h, and the reply's status and text. */
static int rogue_request(SSL *ssl, const char *asks, __u8 dir, char *reply, size_t len)
{
	unsigned char req[6 + SPIFFE_ID_MAX], head[2];
	size_t n = strlen(asks);
	char text[256];

	memcpy(req, "FG", 2);
	req[2] = 1;
	req[3] = dir;
	req[4] = (unsigned char)(n >> 8);
	req[5] = (unsigned char)n;
	memcpy(req + 6, asks, n);
	if (SSL_write(ssl, req, (int)(6 + n)) != (int)(6 + n))
		return snprintf(reply, len, "request not sent"), -EIO;
	if (SSL_read(ssl, head, 2) != 2)
		return snprintf(reply, len, "no reply: %s",
				ERR_reason_error_string(ERR_peek_last_error())), -EIO;
	if (head[1] && SSL_read(ssl, text, head[1]) != head[1])
		return snprintf(reply, len, "short reply"), -EIO;
	text[head[1]] = 0;
	snprintf(reply, len, "%s", text);
	return head[0];
}

int at_rogue_ask(const struct at_peer *p, const char *asks, X509 *cert, EVP_PKEY *key,
		 STACK_OF(X509) *chain, __u8 dir, char *reply, size_t len)
{
	SSL_CTX *ctx = rogue_ctx(false, cert, key, chain);
	char sni[AUTH_SNI_MAX];
	SSL *ssl = NULL;
	int fd, r;

	if (!ctx)
		return -ENOMEM;
	fd = rogue_connect(p);
	if (fd < 0) {
		snprintf(reply, len, "connect: %s", strerror(-fd));
		SSL_CTX_free(ctx);
		return fd;
	}
	ssl = SSL_new(ctx);
	auth_sni_name(asks, sni);
	SSL_set_tlsext_host_name(ssl, sni);
	SSL_set_fd(ssl, fd);
	ERR_clear_error();
	if (SSL_connect(ssl) != 1) {
		snprintf(reply, len, "handshake: %s", ERR_reason_error_string(ERR_peek_last_error()));
		r = -ECONNABORTED;
	} else {
		r = rogue_request(ssl, asks, dir, reply, len);
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	ERR_clear_error();
	return r;
}

/* --- the hostile answerer -------------------------------------------------------------------- */

struct at_rogue {
	pthread_t thread;
	int listen_fd;
	SSL_CTX *ctx;
	int result;
};

static void *rogue_serve(void *arg)
{
	struct at_rogue *r = arg;
	unsigned char buf[6 + SPIFFE_ID_MAX];
	static const unsigned char ok[2] = { 0, 0 };
	int fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	SSL *ssl;

	if (fd < 0) {
		r->result = -errno;
		return NULL;
	}
	set_timeouts(fd);
	ssl = SSL_new(r->ctx);
	SSL_set_fd(ssl, fd);
	r->result = -ECONNABORTED;
	if (SSL_accept(ssl) == 1 && SSL_read(ssl, buf, sizeof(buf)) > 0 &&
	    SSL_write(ssl, ok, sizeof(ok)) == sizeof(ok))
		r->result = 0;
	SSL_free(ssl);
	close(fd);
	return NULL;
}

int at_rogue_answer(int fd, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
		    struct at_rogue **out)
{
	struct at_rogue *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->listen_fd = fd;
	r->ctx = rogue_ctx(true, cert, key, chain);
	if (!r->ctx || pthread_create(&r->thread, NULL, rogue_serve, r)) {
		SSL_CTX_free(r->ctx);
		free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

int at_rogue_join(struct at_rogue *r)
{
	int result;

	pthread_join(r->thread, NULL);
	result = r->result;
	SSL_CTX_free(r->ctx);
	free(r);
	return result;
}

/* --- hostile link peers ---------------------------------------------------------------------- */

static const char *tls_why(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return s ? s : "connection closed";
}

/* The protocol as an ALPN list of one: length byte, then the name. */
static int alpn_list(const char *alpn, unsigned char *out, size_t *len)
{
	size_t n = strlen(alpn);

	if (n == 0 || n > 255)
		return -EINVAL;
	out[0] = (unsigned char)n;
	memcpy(out + 1, alpn, n);
	*len = n + 1;
	return 0;
}

int at_tls_connect(const struct at_peer *p, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
		   const char *alpn, struct at_tls *out, char *why, size_t len)
{
	struct at_tls t = { .fd = -1 };
	unsigned char list[256];
	size_t n;

	t.ctx = rogue_ctx(false, cert, key, chain);
	if (!t.ctx)
		return snprintf(why, len, "no TLS context"), -ENOMEM;
	/* SSL_CTX_set_alpn_protos() returns 0 on success */
	if (alpn && (alpn_list(alpn, list, &n) ||
		     SSL_CTX_set_alpn_protos(t.ctx, list, (unsigned int)n)))
		return at_tls_close(&t), snprintf(why, len, "bad ALPN"), -EINVAL;
	t.fd = rogue_connect(p);
	if (t.fd < 0) {
		int r = t.fd;

		snprintf(why, len, "connect: %s", strerror(-r));
		at_tls_close(&t);
		return r;
	}
	t.ssl = SSL_new(t.ctx);
	SSL_set_fd(t.ssl, t.fd);
	ERR_clear_error();
	if (SSL_connect(t.ssl) != 1) {
		snprintf(why, len, "handshake: %s", tls_why());
		at_tls_close(&t);
		return -ECONNABORTED;
	}
	*out = t;
	return 0;
}

/* The server side takes the test's protocol when offered, and answers none otherwise. */
static int select_test_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			    const unsigned char *in, unsigned int inlen, void *arg)
{
	const char *alpn = arg;
	size_t n = strlen(alpn);

	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == n && i + 1u + n <= inlen && memcmp(in + i + 1, alpn, n) == 0) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

int at_tls_accept(int listen_fd, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
		  const char *alpn, struct at_tls *out, char *why, size_t len)
{
	struct at_tls t = { .fd = -1 };
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };

	t.ctx = rogue_ctx(true, cert, key, chain);
	if (!t.ctx)
		return snprintf(why, len, "no TLS context"), -ENOMEM;
	if (alpn)
		SSL_CTX_set_alpn_select_cb(t.ctx, select_test_alpn, (void *)alpn);
	if (poll(&pfd, 1, ROGUE_TIMEOUT_S * 1000) != 1)
		return at_tls_close(&t), snprintf(why, len, "nobody connected"), -ETIMEDOUT;
	t.fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (t.fd < 0)
		return at_tls_close(&t), snprintf(why, len, "accept: %m"), -errno;
	set_timeouts(t.fd);
	t.ssl = SSL_new(t.ctx);
	SSL_set_fd(t.ssl, t.fd);
	ERR_clear_error();
	if (SSL_accept(t.ssl) != 1) {
		snprintf(why, len, "handshake: %s", tls_why());
		at_tls_close(&t);
		return -ECONNABORTED;
	}
	*out = t;
	return 0;
}

int at_tls_write(struct at_tls *t, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		int n = SSL_write(t->ssl, (const char *)buf + done, (int)(len - done));

		if (n <= 0) {
			ERR_clear_error();
			return -EIO;
		}
		done += (size_t)n;
	}
	return 0;
}

static int tls_read_all(struct at_tls *t, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		int n = SSL_read(t->ssl, (char *)buf + done, (int)(len - done));

		if (n <= 0) {
			ERR_clear_error();
			return -EIO;
		}
		done += (size_t)n;
	}
	return 0;
}

size_t at_link_frame(unsigned char *buf, __u8 type, const void *payload, size_t len)
{
	__u32 n = (__u32)len + 1;

	buf[0] = (unsigned char)(n >> 24);
	buf[1] = (unsigned char)(n >> 16);
	buf[2] = (unsigned char)(n >> 8);
	buf[3] = (unsigned char)n;
	buf[4] = type;
	memcpy(buf + 5, payload, len);
	return 5 + len;
}

int at_link_send(struct at_tls *t, __u8 type, const void *payload, size_t len)
{
	unsigned char *buf = malloc(5 + len);
	int r;

	if (!buf)
		return -ENOMEM;
	r = at_tls_write(t, buf, at_link_frame(buf, type, payload, len));
	free(buf);
	return r;
}

int at_link_recv(struct at_tls *t, __u8 *type, char *buf, size_t len)
{
	unsigned char head[5], skip[4096];
	size_t n, keep;

	if (tls_read_all(t, head, sizeof(head)))
		return -EIO;
	n = ((size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3]) - 1;
	keep = n < len - 1 ? n : len - 1;
	if (tls_read_all(t, buf, keep))
		return -EIO;
	buf[keep] = 0;
	for (size_t left = n - keep, k; left; left -= k) {
		k = left < sizeof(skip) ? left : sizeof(skip);
		if (tls_read_all(t, skip, k))
			return -EIO;
	}
	*type = head[4];
	return 0;
}

int at_link_goodbye(struct at_tls *t, char *buf, size_t len)
{
	__u8 type;

	for (int i = 0; i < 10000; i++) {
		if (at_link_recv(t, &type, buf, len))
			return -EIO;
		if (type == 3)
			return 0;
	}
	return -E2BIG;
}

void at_tls_close(struct at_tls *t)
{
	SSL_free(t->ssl);
	SSL_CTX_free(t->ctx);
	if (t->fd >= 0)
		close(t->fd);
	*t = (struct at_tls){ .fd = -1 };
}

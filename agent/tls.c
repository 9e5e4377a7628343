// SPDX-License-Identifier: Apache-2.0
/* TLS operations against a deadline (tls.h). */
#include "tls.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include <openssl/err.h>

#include "io.h"

/* Chains are judged by svid_verify() after the handshake. */
static int accept_any_chain(X509_STORE_CTX *ctx, void *arg)
{
	return 1;
}

SSL_CTX *tls_ctx_svid(const SSL_METHOD *method)
{
	SSL_CTX *c = SSL_CTX_new(method);

	if (!c)
		return NULL;
	if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
		SSL_CTX_free(c);
		return NULL;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(c, accept_any_chain, NULL);
	return c;
}

int tls_parse_sni(const unsigned char *p, size_t len, char *out, size_t max)
{
	size_t list, name;

	/* ServerNameList length (2), then one entry: type host_name (0), length (2), name */
	if (len < 5)
		return -EINVAL;
	list = (size_t)p[0] << 8 | p[1];
	name = (size_t)p[3] << 8 | p[4];
	if (list + 2 != len || p[2] != 0 || name + 3 > list || name == 0 || name >= max ||
	    memchr(p + 5, 0, name))
		return -EINVAL;
	memcpy(out, p + 5, name);
	out[name] = 0;
	return 0;
}

int tls_do(SSL *ssl, enum tls_op op, void *buf, int len, int64_t deadline)
{
	int n, err;

	for (;;) {
		ERR_clear_error();
		if (op == TLS_HANDSHAKE)
			n = SSL_do_handshake(ssl);
		else if (op == TLS_READ)
			n = SSL_read(ssl, buf, len);
		else
			n = SSL_write(ssl, buf, len);
		if (n > 0)
			return n;
		err = SSL_get_error(ssl, n);
		if (err == SSL_ERROR_ZERO_RETURN)
			return -ECONNRESET;
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
			return -ECONNABORTED;
		err = io_wait(SSL_get_fd(ssl), err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
			      deadline);
		if (err)
			return err;
	}
}

int tls_io_all(SSL *ssl, enum tls_op op, void *buf, int len, int64_t deadline)
{
	for (int done = 0, n; done < len; done += n) {
		n = tls_do(ssl, op, (char *)buf + done, len - done, deadline);
		if (n < 0)
			return n;
	}
	return 0;
}

const char *tls_error(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return s ? s : "connection closed";
}

const char *tls_strerror(int err)
{
	return err == -ETIMEDOUT ? "timed out" : tls_error();
}

STACK_OF(X509) *tls_peer_chain(SSL *ssl)
{
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
	STACK_OF(X509) *chain = sk_X509_new_null();

	if (!chain || !leaf || !X509_up_ref(leaf) || !sk_X509_push(chain, leaf)) {
		sk_X509_pop_free(chain, X509_free);
		return NULL;
	}
	/* the client's view of the chain starts with the leaf, the server's does not */
	for (int i = 0; i < sk_X509_num(sent); i++) {
		X509 *c = sk_X509_value(sent, i);

		if (X509_cmp(c, leaf) == 0)
			continue;
		if (!X509_up_ref(c) || !sk_X509_push(chain, c)) {
			sk_X509_pop_free(chain, X509_free);
			return NULL;
		}
	}
	return chain;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS on non-blocking sockets against a deadline, shared by the peer
 * authentication exchanges (auth_tls.c), the bundle endpoint server
 * (bundle_endpoint.c) and links (link_conn.c): one OpenSSL operation
 * retried as it asks, waiting with io_wait() until the caller's deadline
 * (io_now_ms() clock).
 */
#ifndef FEDGUARD_TLS_H
#define FEDGUARD_TLS_H

#include <stdint.h>

#include <openssl/ssl.h>

enum tls_op {
	TLS_HANDSHAKE,
	TLS_READ,
	TLS_WRITE,
};

/*
 * One TLS operation on ssl's (non-blocking) descriptor: the bytes moved (1
 * for a handshake), -ETIMEDOUT at deadline, -ECONNRESET when the other side
 * closed the TLS connection cleanly, -ECONNABORTED for any other TLS
 * failure (tls_error() says which), or the -errno of waiting.
 */
int tls_do(SSL *ssl, enum tls_op op, void *buf, int len, int64_t deadline);

/* tls_do() until all len bytes are read or written: 0 or its error. */
int tls_io_all(SSL *ssl, enum tls_op op, void *buf, int len, int64_t deadline);

/* OpenSSL's latest error as text ("connection closed" when none), its queue emptied. */
const char *tls_error(void);

/* The text of a tls_do() error: "timed out", or what TLS said. */
const char *tls_strerror(int err);

/*
 * A TLS 1.3-only context that requires the other side's certificate and
 * accepts any chain in the handshake: the caller judges the chain after it
 * with svid_verify(), never by OpenSSL's own rules. NULL on failure.
 */
SSL_CTX *tls_ctx_svid(const SSL_METHOD *method);

/*
 * The host name of a ClientHello's server_name extension (p, len as
 * SSL_client_hello_get0_ext() gives them): exactly one host_name entry,
 * no NUL, shorter than max. 0, or -EINVAL.
 */
int tls_parse_sni(const unsigned char *p, size_t len, char *out, size_t max);

/*
 * The other side's certificates, leaf first, then what it sent after it,
 * each referenced (the caller's to sk_X509_pop_free()); NULL when it sent
 * none or memory is out. What svid_verify() takes.
 */
STACK_OF(X509) *tls_peer_chain(SSL *ssl);

#endif /* FEDGUARD_TLS_H */

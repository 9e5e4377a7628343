/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hostile peers for the peer authentication and link tests: they speak
 * the protocols of agent/auth.h and agent/link.h with whatever
 * certificates a test forges, and whatever else a test sends.
 */
#ifndef FG_TEST_ROGUE_H
#define FG_TEST_ROGUE_H

#include <sys/socket.h>

#include <linux/types.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A peer's address and port; from is the asker's source (NULL: any). */
struct at_peer {
	struct sockaddr_storage to;
	socklen_t to_len;
	struct sockaddr_storage from;
	socklen_t from_len;	/* 0: no bind */
};

void at_addr(const char *ip, __u16 port, struct sockaddr_storage *ss, socklen_t *len);

/*
 * A hostile asker: connects, asks for the identity asks (server name and
 * request), presenting cert, key and chain, with direction dir. Returns
 * the reply's status (0 authenticated, 1 refused), with its text in reply,
 * or -errno when the exchange broke off (reply then says where).
 */
int at_rogue_ask(const struct at_peer *p, const char *asks, X509 *cert, EVP_PKEY *key,
		 STACK_OF(X509) *chain, __u8 dir, char *reply, size_t len);

/*
 * A hostile answerer on its own thread: serves one connection on the
 * listening socket fd, presenting cert, key and chain whatever is asked,
 * and answers "authenticated". at_rogue_join() waits for it (0 or -errno).
 */
struct at_rogue;
int at_rogue_answer(int fd, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
		    struct at_rogue **out);
int at_rogue_join(struct at_rogue *r);

/* A listening TCP socket on ip:port (port 0: any); returns the fd or -errno. */
int at_listen(const char *ip, __u16 port);

/* --- link peers ------------------------------------------------------------------------------ */

/* One end of a blocking TLS 1.3 connection; its reads and writes time out after 5 s. */
struct at_tls {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
};

/*
 * A client to p presenting cert, key and chain (cert NULL: no certificate),
 * offering the ALPN protocol alpn (NULL: no ALPN at all): 0, or -errno
 * with the cause in why. It accepts any server certificate.
 */
int at_tls_connect(const struct at_peer *p, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
		   const char *alpn, struct at_tls *out, char *why, size_t len);

/*
 * A server: accepts one connection on the listening socket fd within 5 s,
 * presents cert, asks for a client certificate (any), and selects alpn
 * when the client offers it (NULL: answers no ALPN). 0 or -errno, why.
 */
int at_tls_accept(int listen_fd, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
		  const char *alpn, struct at_tls *out, char *why, size_t len);

/* Writes all of buf: 0 or -EIO. */
int at_tls_write(struct at_tls *t, const void *buf, size_t len);

/* A link frame of type and payload in buf (5 + len bytes); returns its length. */
size_t at_link_frame(unsigned char *buf, __u8 type, const void *payload, size_t len);

/* Sends one link frame: 0 or -errno. */
int at_link_send(struct at_tls *t, __u8 type, const void *payload, size_t len);

/* The next frame: its type, its payload NUL-terminated in buf (cut to len - 1): 0 or -EIO. */
int at_link_recv(struct at_tls *t, __u8 *type, char *buf, size_t len);

/* Reads frames up to a goodbye, its reason in buf: 0, or -EIO when the connection ends first. */
int at_link_goodbye(struct at_tls *t, char *buf, size_t len);

void at_tls_close(struct at_tls *t);

#endif /* FG_TEST_ROGUE_H */

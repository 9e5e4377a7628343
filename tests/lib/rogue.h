/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hostile peers for the peer authentication tests: they speak the
 * protocol of agent/auth.h with whatever certificates a test forges.
 */
#ifndef FG_TEST_ROGUE_H
#define FG_TEST_ROGUE_H

#include <sys/socket.h>

#include <linux/types.h>
#include <openssl/evp.h>
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

#endif /* FG_TEST_ROGUE_H */

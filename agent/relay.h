/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The relay of the encrypted transport: one workload TCP connection carried
 * between two agents inside TLS 1.3. On each node a flow has a plaintext
 * TCP socket (to or from the local workload) and a TLS connection (to or
 * from the other node's agent); relay_run() moves bytes between them both
 * ways until the flow ends, so that the two workloads see what a direct TCP
 * connection would show them:
 *
 * - bytes arrive in order and exactly, and a receiver that does not read
 *   stops the sender: about buf_size bytes at most wait in the relay per
 *   direction, besides the kernel's socket buffers and the record OpenSSL
 *   is reading;
 * - a half-close passes through: EOF from the workload becomes close_notify,
 *   close_notify becomes shutdown(SHUT_WR), and the other direction goes on;
 * - a reset passes through: a workload's RST, a socket error, a TLS failure,
 *   or the TLS connection's TCP ending without close_notify (a truncation,
 *   never taken for a clean EOF) make both sockets reset on close.
 *
 * Threads: relay_run() runs one flow on the calling thread until the flow
 * ends, blocked in poll() whenever it waits; one thread per flow, so a slow
 * flow delays no other. Flows share nothing. No SIGPIPE: the relay sends
 * on both sockets itself with MSG_NOSIGNAL, and OpenSSL only reads.
 */
#ifndef FEDGUARD_RELAY_H
#define FEDGUARD_RELAY_H

#include <stddef.h>

#include <linux/types.h>
#include <openssl/ssl.h>

enum relay_end {
	RELAY_END_CLOSED = 1,	/* both directions finished cleanly */
	RELAY_END_RESET,	/* one side reset or failed: the other was reset */
	RELAY_END_CANCELLED,	/* cancel_fd became readable */
};

struct relay_stats {
	__u64 plain_to_tls;	/* bytes read from the plaintext side and written into TLS */
	__u64 tls_to_plain;	/* bytes read from TLS and written to the plaintext side */
	int end;		/* enum relay_end: how it ended */
	int err;		/* the -errno of a failure, 0 otherwise */
};

/*
 * Relays between plain_fd (a connected TCP socket) and ssl (a TLS connection whose handshake
 * is complete, over a connected TCP socket) until both directions are closed, one side fails,
 * or cancel_fd (an eventfd, or -1) becomes readable. Runs on the caller's thread; blocks in
 * poll(). Puts both descriptors into non-blocking mode. Does not close plain_fd, free ssl or
 * close its fd: the caller does, after relay_run() returns. Returns 0 or -errno (bad
 * arguments, no memory).
 *
 * buf_size bounds the bytes held per direction (TLS records waiting for the socket count
 * against it, their overhead aside), 0 for 64 KiB. cancel_fd is only polled, never read, so
 * that one eventfd can end every flow of a workload. ssl gets SSL_MODE_ENABLE_PARTIAL_WRITE
 * and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, and loses SSL_OP_IGNORE_UNEXPECTED_EOF, which
 * would let a truncation pass for a clean end. While it runs, OpenSSL writes its records
 * into a buffer of the relay's, not into the socket (relay.c says why); ssl has its own
 * write BIO back when relay_run() returns. An ssl with kTLS for sending is refused.
 *
 * On 0, *st says how the flow ended; on RELAY_END_RESET and RELAY_END_CANCELLED both sockets
 * are set to reset on close (relay_abort()). On -errno nothing was relayed, neither socket
 * was set to reset, and *st is not written.
 */
int relay_run(int plain_fd, SSL *ssl, int cancel_fd, size_t buf_size, struct relay_stats *st);

/* Makes close() of fd send a TCP RST (SO_LINGER 0): how a reset is passed on. 0 or -errno. */
int relay_abort(int fd);

#endif /* FEDGUARD_RELAY_H */

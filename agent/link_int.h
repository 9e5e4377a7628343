/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The insides of the link engine, shared by its two files: link.c (the
 * engine, its threads, outboxes, events and snapshots) and link_conn.c
 * (one connection on the wire, run by its thread). Not an API.
 *
 * Locking: one mutex, e->lock, guards everything below it in struct
 * link_engine and in struct link_conn. A connection's thread owns its
 * socket and SSL alone and takes the lock only to look at its outbox and
 * requests and to record what happened; nobody blocks holding it.
 */
#ifndef FEDGUARD_LINK_INT_H
#define FEDGUARD_LINK_INT_H

#include <pthread.h>
#include <stdbool.h>

#include <openssl/ssl.h>

#include "link.h"
#include "listener.h"

enum {
	LINK_HEADER = 5,	/* length (4) and type (1) */
};

/* A frame queued to a connection, header included: what goes on the wire. */
struct link_frame {
	struct link_frame *next;
	size_t len;		/* of data */
	bool message;		/* counts as a message (msgs_out) */
	unsigned char data[];
};

/* One dial or one incoming connection, and its thread. */
struct link_conn {
	struct link_conn *next;		/* in e->conns */
	struct link_engine *e;
	uint64_t id;
	enum link_dir dir;
	pthread_t thread;
	int wake_fd;			/* eventfd: the outbox or a request changed */
	int fd;				/* incoming: the accepted socket, for the thread */
	struct sockaddr_storage addr;	/* dialed, or where the connection comes from */
	socklen_t addr_len;
	char *expected;			/* a dial's expected SPIFFE ID; NULL for incoming */

	/* under e->lock */
	enum link_state state;
	bool exited;			/* the thread has ended: join and free */
	bool ending;			/* undialed or the engine stops: the thread ends */
	bool close_req;			/* the connection in progress ends: close_why */
	char close_why[LINK_WHY_MAX];
	struct link_frame *out_head, *out_tail;
	size_t out_bytes;		/* queued, and taken but not yet written */
	char peer_id[SPIFFE_ID_MAX + 1];
	char peer_td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	int64_t since_ms, last_rx_ms;
	time_t not_after;
	uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
	unsigned int attempts;		/* failed in a row */
	char last_error[LINK_WHY_MAX];
	char reported[LINK_WHY_MAX];	/* the last failure reported, for the rate limit */
	int64_t reported_ms;
};

struct link_engine {
	struct link_config cfg;
	SSL_CTX *client_ctx, *server_ctx;
	struct listener listen;
	int event_fd;			/* eventfd: events to collect */

	pthread_mutex_t lock;
	bool stopping;
	struct auth_trust *trust;
	struct link_conn *conns;	/* newest first */
	unsigned int n_conns;		/* whose thread has not exited */
	uint64_t last_id;
	struct link_event *events;	/* a ring of cfg.events_max */
	size_t ev_head, ev_n, ev_bytes;
	struct link_stats stats;
	int64_t fail_tokens_ms;		/* the incoming failure reports' bucket (link.c) */
};

/* How one attempt (one connection) ended, from link_conn_run(). */
struct link_end {
	bool was_up;
	bool redial;			/* a planned end: dial again at once */
	char why[LINK_WHY_MAX];
};

/* A frame of type with len bytes of payload (copied): NULL when memory is out. */
struct link_frame *link_frame_new(enum link_frame_type type, const void *payload, size_t len);

/* Runs one connection of c from connect or accept to its end (link_conn.c). */
void link_conn_run(struct link_conn *c, struct link_end *end);

/* The TLS contexts (link_conn.c): 0 or -ENOMEM with why. */
int link_tls_init(struct link_engine *e, char *why, size_t why_len);
void link_tls_free(struct link_engine *e);

/* --- what a connection's thread asks of the engine (link.c) ---------------------------------- */

/*
 * The start of an attempt: a reference to the current trust (or NULL), and
 * whether the attempt may go on (false: the dial ends, or the engine stops).
 */
bool link_conn_begin(struct link_conn *c, struct auth_trust **trust);

/*
 * The peer's chain validated as spiffe_id of td: records them, and says
 * whether the connection may go on: 0, or -ECANCELED with why (the trust
 * domain lost its authorities meanwhile, or a close was asked for).
 */
int link_conn_verified(struct link_conn *c, const char *spiffe_id, const char *td, char *why,
		       size_t why_len);

/* The peer's hello arrived: the connection is up; an UP event carrying hello (taken). */
void link_conn_up(struct link_conn *c, char *hello, time_t not_after);

/* A message arrived: a MESSAGE event carrying text (taken, len bytes and a NUL). */
void link_conn_message(struct link_conn *c, char *text, size_t len);

/* Bytes of frames received, and when. */
void link_conn_received(struct link_conn *c, size_t bytes, int64_t now_ms);

/*
 * The next frames to write, at most max bytes of small ones copied to buf
 * (*big NULL), or one large frame alone in *big (buf untouched). Returns
 * the bytes of buf used, 0 with *big NULL when the outbox is empty.
 * *msgs says how many of them are messages. They stay in out_bytes until
 * link_conn_written().
 */
size_t link_conn_take(struct link_conn *c, unsigned char *buf, size_t max,
		      struct link_frame **big, unsigned int *msgs);

/* frames bytes of taken frames (msgs messages) were written, wire bytes in all. */
void link_conn_written(struct link_conn *c, size_t frames, unsigned int msgs, size_t wire);

/* Whether a close was asked for; then its reason in why. Drains the wake eventfd. */
bool link_conn_close_asked(struct link_conn *c, char *why, size_t why_len);

#endif /* FEDGUARD_LINK_INT_H */

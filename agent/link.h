/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Links: persistent mutual TLS 1.3 connections between agents, each side
 * presenting its node SVID (spiffe://TD/fedguard/node/NAME), over which the
 * federation sends what must arrive within milliseconds (docs/federation.md,
 * "Link protocol"; docs/ARCHITECTURE.md, "Links between agents"). This is
 * the transport only: what a message says is the caller's business.
 *
 * An engine listens (when its configuration has a listen address) and
 * dials. An outgoing link (link_dial()) is kept up: connect, handshake,
 * validate the server's chain with svid_verify() requiring exactly the
 * expected SPIFFE ID, exchange hellos, run; on any failure or loss, again
 * after a backoff. An incoming connection is validated the same way (any
 * SPIFFE ID of a trust domain the trust knows) and then put to the
 * config's admit callback. Once up, both kinds are the same: messages
 * both ways (link_send()), pings, a dead time, and an end at the earliest
 * notAfter of both chains.
 *
 * Wire format: TLS 1.3 only, both sides with certificates, ALPN
 * "fedguard-link/1" required of both. Then frames:
 *
 *   length   4 bytes, big-endian: what follows (1 + the payload's length)
 *   type     1 byte: LINK_FRAME_PING, _HELLO, _MESSAGE or _GOODBYE
 *   payload  ping: nothing; hello and message: a JSON object (UTF-8, no
 *            NUL); goodbye: a reason, printable text
 *
 * Each side's first frame is its hello; before the other side's hello only
 * a goodbye is accepted. A ping goes out whenever nothing else was sent for
 * a heartbeat interval. A frame over the limit, of an unknown type, a
 * payload that is no JSON object, a second hello: the connection is closed
 * (with a goodbye naming the cause) and reported.
 *
 * Threads: one per connection (an outgoing link's thread lives as long as
 * the dial), plus one accepting thread; each owns its socket and its SSL.
 * Every step is bounded in time; worker threads block every signal. The
 * caller's thread never waits for a peer: link_send() queues a copy, and
 * what happens comes back as events on an eventfd (link_engine_fd(),
 * link_engine_collect()). The hello and admit callbacks run on connection
 * threads, possibly several at once, and must not block. The functions
 * below are for the caller's thread; link_engine_free() comes last.
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success, why only on failure. Nothing
 * here logs: what happens is in the events.
 */
#ifndef FEDGUARD_LINK_H
#define FEDGUARD_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "spiffe.h"

struct auth_trust;
struct svids;

#define LINK_ALPN "fedguard-link/1"

enum {
	LINK_HEARTBEAT_MS_DEFAULT = 1000,	/* a ping after this long without sending */
	LINK_DEAD_MS_DEFAULT = 5000,		/* closed after this long without receiving */
	LINK_HANDSHAKE_MS_DEFAULT = 3000,	/* connect, TLS and both hellos */
	LINK_RETRY_MIN_MS_DEFAULT = 100,	/* a dial's first retry, doubled per failure */
	LINK_RETRY_MAX_MS_DEFAULT = 5000,
	LINK_FRAME_MAX_DEFAULT = 1 << 20,	/* bytes of a frame's payload */
	LINK_FRAME_MAX_LIMIT = 64 << 20,	/* the largest frame_max accepted */
	LINK_OUTBOX_MAX_DEFAULT = 4 << 20,	/* bytes queued to one connection */
	LINK_CONNS_MAX_DEFAULT = 256,		/* connections in all, dials included */
	LINK_IN_PER_ADDR_DEFAULT = 8,		/* incoming connections from one address */
	LINK_EVENTS_MAX_DEFAULT = 4096,		/* uncollected events; then the oldest go */
	LINK_EVENT_BYTES_DEFAULT = 64 << 20,	/* bytes of text in uncollected events */
	LINK_FAIL_REPORT_MS = 30000,		/* a dial's same failure reported this often */
	LINK_WHY_MAX = 512,
	LINK_ADDR_MAX = 64,			/* link_addr_str()'s buffer */
};

/* Frame types on the wire. */
enum link_frame_type {
	LINK_FRAME_PING = 0,
	LINK_FRAME_HELLO = 1,
	LINK_FRAME_MESSAGE = 2,
	LINK_FRAME_GOODBYE = 3,
};

enum link_dir {
	LINK_OUT = 1,	/* we dialed */
	LINK_IN = 2,	/* the peer dialed */
};

enum link_state {
	LINK_CONNECTING = 1,	/* a dial between attempts or in one; an incoming handshake */
	LINK_UP = 2,		/* hellos exchanged: messages flow */
};

/* Who the other side is, for the callbacks. Everything is borrowed for the call only. */
struct link_peer {
	uint64_t id;
	enum link_dir dir;
	const char *spiffe_id;		/* what its chain proved */
	const char *td;			/* its trust domain */
	const struct sockaddr *addr;	/* its address (the dialed one, or the source) */
	socklen_t addr_len;
};

struct link_config {
	struct sockaddr_storage listen;	/* AF_UNSPEC (all zero): the engine only dials */
	socklen_t listen_len;
	struct sockaddr_storage source;	/* dial from this address (port 0); AF_UNSPEC: any */
	socklen_t source_len;
	struct svids *svids;		/* presents svids_get(svids, svids_node_id(svids)) */
	unsigned int heartbeat_ms;	/* 0: LINK_HEARTBEAT_MS_DEFAULT, and so on */
	unsigned int dead_ms;		/* more than heartbeat_ms */
	unsigned int handshake_ms;
	unsigned int retry_min_ms;
	unsigned int retry_max_ms;	/* at least retry_min_ms */
	size_t frame_max;
	size_t outbox_max;		/* at least a frame of frame_max */
	unsigned int conns_max;
	unsigned int in_per_addr;
	unsigned int events_max;
	size_t event_bytes_max;
	/*
	 * The application's hello for a new connection (after the peer's chain
	 * validated and it was admitted): a JSON object, malloc()ed, the
	 * engine's to free; NULL closes the connection. A NULL callback sends
	 * "{}".
	 */
	char *(*hello)(void *ctx, const struct link_peer *peer);
	/*
	 * Whether an incoming peer whose chain validated may link: true, or
	 * false with the reason in why. Required when listening.
	 */
	bool (*admit)(void *ctx, const struct link_peer *peer, char *why, size_t why_len);
	void *ctx;
};

enum link_event_type {
	LINK_EV_UP = 1,		/* hellos exchanged */
	LINK_EV_MESSAGE = 2,	/* a message arrived */
	LINK_EV_DOWN = 3,	/* a connection ended, or an attempt failed (was_up false) */
};

/*
 * What happened. Strings are the event's own, freed by link_event_release().
 *
 *   UP       id, dir, addr, peer_id, peer_td, text (the peer's hello), not_after
 *   MESSAGE  id, dir, peer_id, peer_td (the sender, as its chain proved),
 *            text (a JSON object, NUL-terminated), len
 *   DOWN     id, dir, addr, was_up, attempts, text (why: "handshake: ...",
 *            "the SVID of '...' is rejected (untrusted): ...", "not admitted:
 *            ...", "silent for 5 s", "outbox full: ...", "closed by the peer:
 *            REASON", ...); peer_id and peer_td when known
 *
 * Of a dial, a failed attempt is a DOWN with was_up false; such DOWNs are
 * rate limited per dial (a new cause at once, the same one every
 * LINK_FAIL_REPORT_MS). Failed incoming connections are rate limited
 * engine-wide (link_stats.fail_suppressed counts the rest).
 */
struct link_event {
	enum link_event_type type;
	enum link_dir dir;
	uint64_t id;
	bool was_up;
	unsigned int attempts;		/* DOWN of a dial: failed attempts in a row */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char *peer_id;
	char *peer_td;
	char *text;
	size_t len;			/* of text */
	time_t not_after;		/* UP: the connection ends by then */
};

/* A connection, as link_list() shows it. */
struct link_info {
	uint64_t id;
	enum link_dir dir;
	enum link_state state;
	char peer_id[SPIFFE_ID_MAX + 1];	/* the proven ID; a dial's expected one before */
	char peer_td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int64_t since_ms;		/* io_now_ms() clock: of the last change of state */
	int64_t last_rx_ms;		/* of the last bytes received; 0: none */
	time_t not_after;		/* when up */
	uint64_t bytes_in, bytes_out;	/* of frames, this connection */
	uint64_t msgs_in, msgs_out;	/* messages, this connection */
	unsigned int attempts;		/* a dial's failed attempts in a row */
	char last_error[LINK_WHY_MAX];	/* a dial's latest failure or end; "" */
};

struct link_stats {
	uint64_t events_dropped;	/* uncollected events dropped for newer ones */
	uint64_t fail_suppressed;	/* failed attempts not reported (rate limit) */
	uint64_t refused;		/* incoming connections closed at once: limits */
};

struct link_engine;

/* "ADDR:PORT" or "[ADDR]:PORT" (IPv4 or IPv6 literal, port 1 to 65535): 0 or -EINVAL. */
int link_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len);

/* "ADDR port PORT" of a socket address, in buf of LINK_ADDR_MAX bytes; returns buf. */
const char *link_addr_str(const struct sockaddr *sa, char *buf);

/* An engine with nothing running: -EINVAL (a bad configuration), -ENOMEM, why says which. */
int link_engine_new(const struct link_config *cfg, struct link_engine **out, char *why,
		    size_t why_len);

/*
 * Binds and listens on cfg->listen and starts the accepting thread: 0 or
 * -errno with why; 0 and nothing else without a listen address.
 */
int link_engine_start(struct link_engine *e, char *why, size_t why_len);

/* Closes every connection (with a goodbye), joins every thread, frees the engine. */
void link_engine_free(struct link_engine *e);

/* The port listened on, after link_engine_start(); 0 when not listening. */
uint16_t link_engine_port(const struct link_engine *e);

/*
 * Replaces the authorities peers are validated with, taking the caller's
 * reference (NULL: none). Connections that validated with the old trust
 * keep running, except those whose peer's trust domain has no authorities
 * in t: they are closed ("the trust domain 'TD' is no longer trusted"),
 * as link_close_td() would. Returns how many were closed.
 */
int link_engine_set_trust(struct link_engine *e, struct auth_trust *t);

/*
 * Closes every connection of a peer of trust domain td (a dial stays and
 * tries again: it fails while td is not trusted), with why as the reason
 * (NULL: "the trust domain 'TD' is revoked"). Returns how many.
 */
int link_close_td(struct link_engine *e, const char *td, const char *why);

/*
 * Keeps a link to "ADDR:PORT" (an IP literal; no name resolution) up,
 * requiring the server to prove exactly expected_id: its id in *id, 0, or
 * -EINVAL (a bad address or ID), -ENOSPC (conns_max), -ESHUTDOWN, -ENOMEM.
 * link_dial_addr() takes a socket address.
 */
int link_dial(struct link_engine *e, const char *addr, const char *expected_id, uint64_t *id);
int link_dial_addr(struct link_engine *e, const struct sockaddr *addr, socklen_t addr_len,
		   const char *expected_id, uint64_t *id);

/* Ends a dial (a connection up gets a goodbye): 0, or -ENOENT. Never waits. */
int link_undial(struct link_engine *e, uint64_t id);

/*
 * Queues a copy of msg (len bytes of JSON object text, len at most
 * frame_max) to connection id: 0; -ENOENT (no such connection),
 * -ENOTCONN (not up, or closing), -EMSGSIZE, -ENOMEM; -ENOBUFS when the
 * outbox would hold more than outbox_max: then the connection is closed
 * ("outbox full") and reported. Never waits for the peer. The peer checks
 * that msg is a JSON object; this side does not.
 */
int link_send(struct link_engine *e, uint64_t id, const char *msg, size_t len);

/* link_send() to every connection up (of direction dir, 0: both): how many took it. */
int link_broadcast(struct link_engine *e, enum link_dir dir, const char *msg, size_t len);

/* Closes connection id with a goodbye saying why (an incoming one ends; a dial retries). */
int link_close(struct link_engine *e, uint64_t id, const char *why);

/* Readable (an eventfd) when events wait to be collected. */
int link_engine_fd(const struct link_engine *e);

/*
 * Moves up to max uncollected events to out, oldest first; returns how
 * many. Each is the caller's to link_event_release().
 */
size_t link_engine_collect(struct link_engine *e, struct link_event *out, size_t max);

void link_event_release(struct link_event *ev);

/* A snapshot of the connections and dials, by id, in *out (the caller's to free()). */
int link_list(struct link_engine *e, struct link_info **out, size_t *n);

void link_engine_stats(struct link_engine *e, struct link_stats *out);

#endif /* FEDGUARD_LINK_H */

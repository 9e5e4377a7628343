/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The encrypted transport (docs/transport.md): TCP connections that policy
 * wants encrypted travel between nodes inside TLS 1.3 in which each side
 * presents the SVID of its *workload*.
 *
 * Source node. The connect hook sent the workload's connection to the
 * redirect listener (plain TCP, the node's address) and noted it in
 * fg_tun_orig and fg_tun_src. The tunnel accepts it, finds from its source
 * address the socket's binding (who calls whom) and its original
 * destination, and dials the agent of the destination's node on the tunnel
 * port: TLS 1.3, the calling workload's SVID, the destination's identity
 * asked for by server name (auth_sni_name()) and validated with its own
 * trust domain's bundle, exactly that ID expected. It sends one request
 * (the original destination) and, once accepted, relays.
 *
 * Destination node. The tunnel listener takes the TLS connection, presents
 * the SVID of the workload the server name asks for, validates the caller's
 * SVID with the bundle of its own trust domain, and requires that the
 * caller is a known identity registered at the node it connects from, that
 * the destination address is the asked workload's, and that policy (the
 * kernel's fg_policy, ingress) and quarantine admit the pair. It connects
 * to the workload from an address and port it first records in fg_tun_peer
 * with the caller's identity, so that the workload's socket is bound to
 * the caller, not to the agent. Then it answers and relays.
 *
 * Each flow has its own threads and TLS connection: no flow waits for
 * another (relay.h). Quarantine and revocation cut flows at once
 * (tunnel_cut()): both sockets are reset.
 *
 * Threads: tunnel_start(), tunnel_cut(), tunnel_stats() and tunnel_stop()
 * belong to the caller's thread (the agent's main loop); flows run on
 * threads of their own and never block the caller.
 */
#ifndef FEDGUARD_TUNNEL_H
#define FEDGUARD_TUNNEL_H

#include <stdbool.h>
#include <sys/socket.h>

#include <linux/types.h>

struct auth_engine;
struct json_object;

enum {
	TUNNEL_MAX_FLOWS_DEFAULT = 4096, /* flows at once, both roles; more are reset */
	TUNNEL_HANDSHAKE_MS = 3000,	 /* dial, TLS and the request, each flow */
	TUNNEL_BUF = 64 * 1024,		 /* relay buffer per direction */
	TUNNEL_WHY_MAX = 256,
	TUNNEL_EVENTS_MAX = 1024,	 /* uncollected events kept; older ones dropped */
};

/* Request and answer on the wire (after the TLS handshake), big-endian. */
enum {
	TUNNEL_PROTO_VERSION = 1,
	/* "FT", version, family, port (2), address (16), flow ID (8) */
	TUNNEL_REQUEST_LEN = 30,
	TUNNEL_STATUS_OK = 0,
	TUNNEL_STATUS_REFUSED = 1, /* then one length byte and the reason */
};

struct tunnel_config {
	struct sockaddr_storage listen; /* TLS, for the agents of other nodes */
	socklen_t listen_len;
	struct sockaddr_storage redirect; /* plain TCP, for this node's workloads */
	socklen_t redirect_len;
	struct auth_engine *auth;	/* identities, trust and SVIDs */
	const char *pin_dir;		/* the instance's maps */
	unsigned int max_flows;		/* 0: TUNNEL_MAX_FLOWS_DEFAULT */
};

struct tunnel_stats {
	__u64 flows_out, flows_in;	/* relayed since start (ended or not), by role */
	__u64 refused_out, refused_in;	/* failed or refused before relaying */
	__u64 cut;			/* ended by tunnel_cut() */
	__u64 events_lost;		/* events dropped, uncollected */
	__u64 bytes_out, bytes_in;	/* plaintext carried by ended flows, out and in */
	unsigned int active;		/* flows now */
	bool ktls_available;		/* the kernel offers the "tls" ULP */
};

/*
 * A flow's start (ok) or refusal, for the agent's flow records. flow_id is
 * the same at both agents of a flow: the source's agent makes it and
 * sends it in its request. The leg is the flow's TCP connection on this
 * node: the workload's to its original destination at the source, the
 * agent's to the workload at the destination.
 */
struct tunnel_event {
	__u64 flow_id;
	__u32 local, peer;	/* identities; 0 when not known */
	bool out;		/* the local workload calls */
	bool ok;
	__u8 family;		/* enum fg_family of the leg, 0 when not known */
	__u8 saddr[16], daddr[16];
	__u16 sport, dport;	/* host order */
	__u8 peer_node[16];
	char why[TUNNEL_WHY_MAX];
};

struct tunnel;

/* Opens the maps, binds both listeners and starts accepting. 0 or -errno (logged). */
int tunnel_start(const struct tunnel_config *cfg, struct tunnel **out);

/* Cuts every flow, waits for their threads, closes the listeners. */
void tunnel_stop(struct tunnel *t);

/*
 * Ends (resets both ends of) every flow whose identities or trust domains
 * fg_quarantine now holds, or whose peer's trust domain the engine no
 * longer trusts. Returns how many were cut.
 */
unsigned int tunnel_cut(struct tunnel *t);

void tunnel_stats(struct tunnel *t, struct tunnel_stats *out);

/* Readable when events wait: poll it, then take them. */
int tunnel_event_fd(const struct tunnel *t);

/* Takes up to max waiting events, oldest first: how many. */
size_t tunnel_events_take(struct tunnel *t, struct tunnel_event *out, size_t max);

/* The tunnel's part of `fedguardctl status`. */
struct json_object *tunnel_status_json(struct tunnel *t);

#endif /* FEDGUARD_TUNNEL_H */

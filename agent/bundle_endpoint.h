/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SPIFFE bundle endpoint server of this trust domain: HTTPS with the
 * `https_spiffe` profile of the SPIFFE Trust Domain and Bundle
 * specification (docs/identity.md, "Bundle endpoint"). The server presents
 * an X.509-SVID (the node's) and answers
 *
 *	200  GET /: the bundle set last with bep_server_set_bundle(), as
 *	     Content-Type: application/json
 *	400  not an HTTP/1.x request line
 *	404  GET of another path
 *	405  another method (Allow: GET)
 *	431  a request head longer than BEP_REQUEST_MAX bytes
 *	503  no bundle set yet
 *
 * TLS 1.2 or 1.3 (1.3 when the client has it); no client certificate is
 * asked for: the bundle is public. Every connection gets one response and
 * is closed; its whole life (handshake, request, response) is bounded by
 * timeout_ms. Connections are served one after the other on one worker
 * thread of the server's own, never on the caller's.
 *
 * Threads: bep_server_set_bundle() and bep_server_set_cred() may be called
 * from any thread while the server runs; each connection uses the bundle
 * and credential in force when it was accepted.
 *
 * Conventions: functions return 0 or a negative errno; output parameters
 * are written only on success, why only on failure. Connections log at
 * debug level only.
 */
#ifndef FEDGUARD_BUNDLE_ENDPOINT_H
#define FEDGUARD_BUNDLE_ENDPOINT_H

#include <stddef.h>

#include <linux/types.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

enum {
	BEP_REQUEST_MAX = 4096,	   /* bytes of a request head */
	BEP_TIMEOUT_MS = 3000,	   /* a connection's whole life, by default */
	BEP_WHY_MAX = 1024,
};

struct bep_server_config {
	const char *listen;	 /* "ADDR:PORT" or "[ADDR]:PORT"; port 0: any free port */
	unsigned int timeout_ms; /* 0: BEP_TIMEOUT_MS */
	/* the SVID presented: borrowed, the server takes references */
	X509 *cert;
	EVP_PKEY *key;
	STACK_OF(X509) *chain;	 /* what follows the leaf (may be NULL) */
	const char *bundle_json; /* the bundle to serve at first, or NULL (503 until set) */
};

struct bep_server_stats {
	__u64 responses[6]; /* 200, 400, 404, 405, 431, 503 in that order */
	__u64 failed;	    /* connections that ended without a response: TLS, timeout */
};

struct bep_server;

/*
 * Binds, listens and starts the worker thread. -EINVAL (bad listen
 * address, a key that is not the certificate's), -ENOMEM, or the -errno
 * of binding, with the cause in why.
 */
int bep_server_start(const struct bep_server_config *cfg, struct bep_server **out, char *why,
		     size_t why_len);

/* Stops the worker (a connection in progress is cut short) and frees the server. */
void bep_server_stop(struct bep_server *s);

/* The port listened on (the one picked when the config said 0). */
__u16 bep_server_port(const struct bep_server *s);

/* Serves json (copied) from the next connection on: 0 or -ENOMEM. */
int bep_server_set_bundle(struct bep_server *s, const char *json);

/* Presents this SVID from the next connection on (after a renewal): 0, -EINVAL, -ENOMEM. */
int bep_server_set_cred(struct bep_server *s, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			char *why, size_t why_len);

void bep_server_stats(struct bep_server *s, struct bep_server_stats *out);

#endif /* FEDGUARD_BUNDLE_ENDPOINT_H */

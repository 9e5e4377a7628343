/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Servers of libcurl transfers authenticated by their X.509-SVID, the way
 * fedguard authenticates every peer: the chain the server sends is judged
 * by svid_verify() against the given trust (a trust domain's authorities
 * only, peer intermediates untrusted) and, when given, one exact SPIFFE ID.
 * The system's CA store and host names play no part: an SVID names a
 * SPIFFE ID, not a DNS name. Used by the bundle endpoint client and the
 * mesh store client over https.
 */
#ifndef FEDGUARD_CURL_SVID_H
#define FEDGUARD_CURL_SVID_H

#include <stdbool.h>

#include <curl/curl.h>

#include "svid.h"

struct curl_svid {
	const struct svid_trust *trust;	/* borrowed; must live through the transfer */
	const char *expected_id;	/* NULL: any ID the trust vouches for */
	/* the verdict, written during the handshake */
	bool verified;
	int rejected;			/* an enum svid_reason or -errno; 0 */
	char why[SVID_WHY_MAX];
};

/*
 * Sets c to verify its server with v (TLS 1.2 at least, verification on,
 * host name check and CA files off, no session reuse): 0 or -EINVAL.
 */
int curl_svid_setup(CURL *c, struct curl_svid *v);

#endif /* FEDGUARD_CURL_SVID_H */

// SPDX-License-Identifier: Apache-2.0
/*
 * curl_svid.h: libcurl's peer verification stays on, but the SSL context
 * callback replaces its certificate verification with verify_server(), so
 * svid_verify() decides alone.
 */
#include "curl_svid.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

static int verify_server(X509_STORE_CTX *ctx, void *arg)
{
	struct curl_svid *v = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(ctx);
	STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(ctx);
	STACK_OF(X509) *chain = sk_X509_new_null();
	int r = -ENOMEM;

	/* borrowed certificates: svid_verify() keeps none, the stack is freed alone */
	if (chain && leaf && sk_X509_push(chain, leaf)) {
		r = 0;
		for (int i = 0; i < sk_X509_num(sent) && !r; i++) {
			X509 *c = sk_X509_value(sent, i);

			if (X509_cmp(c, leaf) && !sk_X509_push(chain, c))
				r = -ENOMEM;
		}
	}
	if (!r)
		r = svid_verify(chain, v->trust, v->expected_id, time(NULL), NULL, v->why,
				sizeof(v->why));
	else
		snprintf(v->why, sizeof(v->why), "out of memory");
	sk_X509_free(chain);
	if (r != SVID_OK) {
		v->rejected = r;
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	v->verified = true;
	X509_STORE_CTX_set_error(ctx, X509_V_OK);
	return 1;
}

static CURLcode setup_ssl_ctx(CURL *curl, void *ssl_ctx, void *arg)
{
	SSL_CTX *ctx = ssl_ctx;

	(void)curl;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return CURLE_SSL_CIPHER;
	SSL_CTX_set_cert_verify_callback(ctx, verify_server, arg);
	return CURLE_OK;
}

int curl_svid_setup(CURL *c, struct curl_svid *v)
{
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(c, opt, val);                                        \
	} while (0)
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);	/* by verify_server() */
	SET(CURLOPT_SSL_VERIFYHOST, 0L);	/* replaced by the SPIFFE ID check */
	SET(CURLOPT_CAINFO, (char *)NULL);	/* no system CA store */
	SET(CURLOPT_CAPATH, (char *)NULL);
	SET(CURLOPT_SSL_SESSIONID_CACHE, 0L);	/* every connection validates the chain */
	SET(CURLOPT_SSL_CTX_FUNCTION, setup_ssl_ctx);
	SET(CURLOPT_SSL_CTX_DATA, v);
#undef SET
	return rc == CURLE_OK ? 0 : -EINVAL;
}

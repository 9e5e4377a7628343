/* SPDX-License-Identifier: Apache-2.0 */
/*
 * __attribute__((cleanup)) helpers for OpenSSL objects, the companions of
 * cleanup.h. Every OpenSSL free function used here accepts NULL, so a
 * variable may be declared NULL and given away with take_ptr().
 */
#ifndef FEDGUARD_SSL_CLEANUP_H
#define FEDGUARD_SSL_CLEANUP_H

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* For what OpenSSL allocates as plain memory, such as PEM_read_bio()'s parts. */
static inline void cleanup_openssl_free(void *p)
{
	OPENSSL_free(*(void **)p);
}

static inline void cleanup_x509(X509 **p)
{
	X509_free(*p);
}

/* Frees the stack and every certificate in it. */
static inline void cleanup_x509_stack(STACK_OF(X509) **p)
{
	sk_X509_pop_free(*p, X509_free);
}

static inline void cleanup_x509_store(X509_STORE **p)
{
	X509_STORE_free(*p);
}

static inline void cleanup_x509_store_ctx(X509_STORE_CTX **p)
{
	X509_STORE_CTX_free(*p);
}

static inline void cleanup_x509_name(X509_NAME **p)
{
	X509_NAME_free(*p);
}

static inline void cleanup_x509_extension(X509_EXTENSION **p)
{
	X509_EXTENSION_free(*p);
}

static inline void cleanup_general_names(GENERAL_NAMES **p)
{
	GENERAL_NAMES_free(*p);
}

static inline void cleanup_basic_constraints(BASIC_CONSTRAINTS **p)
{
	BASIC_CONSTRAINTS_free(*p);
}

static inline void cleanup_evp_pkey(EVP_PKEY **p)
{
	EVP_PKEY_free(*p);
}

static inline void cleanup_evp_pkey_ctx(EVP_PKEY_CTX **p)
{
	EVP_PKEY_CTX_free(*p);
}

static inline void cleanup_bio(BIO **p)
{
	BIO_free(*p);
}

static inline void cleanup_bignum(BIGNUM **p)
{
	BN_free(*p);
}

static inline void cleanup_asn1_integer(ASN1_INTEGER **p)
{
	ASN1_INTEGER_free(*p);
}

#define _cleanup_openssl_free_	    __attribute__((cleanup(cleanup_openssl_free)))
#define _cleanup_x509_		    __attribute__((cleanup(cleanup_x509)))
#define _cleanup_x509_stack_	    __attribute__((cleanup(cleanup_x509_stack)))
#define _cleanup_x509_store_	    __attribute__((cleanup(cleanup_x509_store)))
#define _cleanup_x509_store_ctx_    __attribute__((cleanup(cleanup_x509_store_ctx)))
#define _cleanup_x509_name_	    __attribute__((cleanup(cleanup_x509_name)))
#define _cleanup_x509_extension_    __attribute__((cleanup(cleanup_x509_extension)))
#define _cleanup_general_names_	    __attribute__((cleanup(cleanup_general_names)))
#define _cleanup_basic_constraints_ __attribute__((cleanup(cleanup_basic_constraints)))
#define _cleanup_evp_pkey_	    __attribute__((cleanup(cleanup_evp_pkey)))
#define _cleanup_evp_pkey_ctx_	    __attribute__((cleanup(cleanup_evp_pkey_ctx)))
#define _cleanup_bio_		    __attribute__((cleanup(cleanup_bio)))
#define _cleanup_bignum_	    __attribute__((cleanup(cleanup_bignum)))
#define _cleanup_asn1_integer_	    __attribute__((cleanup(cleanup_asn1_integer)))

#endif /* FEDGUARD_SSL_CLEANUP_H */

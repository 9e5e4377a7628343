/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fedguard-ca's commands and the helpers they share: option parsing, the
 * directory layout of CAs (docs/identity.md, "Files"), writing files.
 * Commands return 0, FGCA_REJECTED (verify's answer "no"), FGCA_USAGE, or a
 * negative errno after logging the cause; main() turns that into the exit
 * status 0, 1, 2.
 */
#ifndef FEDGUARD_FGCA_H
#define FEDGUARD_FGCA_H

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "spiffe.h"

/* Long options of the commands; values above any short option's. */
enum {
	FGCA_OPT_TRUST_DOMAIN = 256,
	FGCA_OPT_OUT,
	FGCA_OPT_DAYS,
	FGCA_OPT_FORCE,
	FGCA_OPT_CA,
	FGCA_OPT_NODE,
	FGCA_OPT_SPIFFE_ID,
	FGCA_OPT_TTL,
	FGCA_OPT_SEQUENCE,
	FGCA_OPT_REFRESH_HINT,
	FGCA_OPT_BUNDLE,
};

enum {
	FGCA_REJECTED = 1,
	FGCA_USAGE = 2,
	FGCA_HELP = 3, /* --help was answered: exit 0 */
};

/* The files of a root CA directory (fedguard-ca init). */
#define FGCA_ROOT_CERT "ca.pem"
#define FGCA_ROOT_KEY  "ca.key"
/* The files of a node directory (fedguard-ca issue-node). */
#define FGCA_NODE_CA_CERT "node-ca.pem"
#define FGCA_NODE_CA_KEY  "node-ca.key"
#define FGCA_NODE_CERT	  "node.pem"
#define FGCA_NODE_KEY	  "node.key"
/* The files of an SVID directory (fedguard-ca svid). */
#define FGCA_SVID_CERT "svid.pem"
#define FGCA_SVID_KEY  "svid.key"
/* The files of a policy key directory (fedguard-ca policy-key). */
#define FGCA_POLICY_KEY "policy.key"
#define FGCA_POLICY_PUB "policy.pub"

struct fgca_cmd;

/* A command's entry in the table of main(). */
struct fgca_cmd {
	const char *name;
	const char *synopsis;  /* the arguments, for the usage line */
	const char *help;      /* one line */
	const char *opts_help; /* one line per option */
	const struct option *opts;
	int (*run)(const struct fgca_cmd *cmd, int argc, char **argv);
};

extern const struct fgca_cmd fgca_cmd_init;
extern const struct fgca_cmd fgca_cmd_issue_node;
extern const struct fgca_cmd fgca_cmd_svid;
extern const struct fgca_cmd fgca_cmd_bundle;
extern const struct fgca_cmd fgca_cmd_verify;
extern const struct fgca_cmd fgca_cmd_policy_key;

/*
 * getopt_long over a command's options plus -h/--help and -j/--json. Returns
 * the next option, -1 at the end, FGCA_HELP after printing the help, or
 * -FGCA_USAGE after reporting an unknown option or a missing argument.
 */
int fgca_getopt(const struct fgca_cmd *cmd, int argc, char **argv, bool *json);

/* Prints a command's help to stdout. */
void fgca_usage(const struct fgca_cmd *cmd);

/* Logs a usage error of cmd and returns FGCA_USAGE. */
__attribute__((format(printf, 2, 3))) int fgca_usage_error(const struct fgca_cmd *cmd,
							   const char *fmt, ...);

/* Parses an integer option value in [min, max]: 0, or FGCA_USAGE after logging. */
int fgca_parse_u64(const struct fgca_cmd *cmd, const char *opt, const char *arg, uint64_t min,
		   uint64_t max, uint64_t *out);

/* One file a command wrote, for fgca_report(). */
struct fgca_file {
	const char *what; /* "certificate", "key", ... (a JSON member name) */
	char path[PATH_MAX];
};

/*
 * Reports what a command issued: the kind ("root", "node", "svid"), its
 * SPIFFE ID, trust domain, expiry and files, as text or as one JSON object
 * on stdout.
 */
void fgca_report(bool json, const char *kind, const char *spiffe_id, const char *td,
		 time_t not_after, const struct fgca_file *files, size_t n);

/* Pushes cert onto certs (NULL: -ENOMEM) with a reference of its own: 0 or -ENOMEM. */
int fgca_push(STACK_OF(X509) *certs, X509 *cert);

/* t as "2030-01-01T00:00:00Z" in buf. */
const char *fgca_time(time_t t, char *buf, size_t len);

/* dir/name into buf: 0, or -ENAMETOOLONG after logging. */
int fgca_path(char *buf, const char *dir, const char *name);

/* Creates dir (mode 0755) unless it exists as a directory: 0 or -errno after logging. */
int fgca_mkdir(const char *dir);

/* Fails with -EEXIST, naming the file, when dir/name exists and force is not set. */
int fgca_check_absent(const char *dir, const char *const *names, bool force);

/*
 * Writes the PEM of certs (in order) or of key to dir/name, atomically: a
 * temporary file, fsync, then rename() when force is set or link() so that
 * an existing file is never replaced. Keys get mode 0600, certificates
 * 0644. 0 or -errno after logging.
 */
int fgca_write_certs(const char *dir, const char *name, STACK_OF(X509) *certs, bool force);
int fgca_write_key(const char *dir, const char *name, EVP_PKEY *key, bool force);
/* The PEM public key (SubjectPublicKeyInfo) of key, mode 0644, the same way. */
int fgca_write_pubkey(const char *dir, const char *name, EVP_PKEY *key, bool force);

/*
 * A signing CA read from a directory: a root (ca.pem, ca.key) or a node CA
 * (node-ca.pem, node-ca.key), whichever the directory holds.
 */
struct fgca_issuer {
	bool is_root;
	X509 *cert; /* the first certificate of the file */
	EVP_PKEY *key;
	STACK_OF(X509) *file; /* every certificate of the file */
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char cert_path[PATH_MAX];
};

/*
 * Reads the CA of dir and checks it: a CA certificate with a SPIFFE ID
 * spiffe://TD, and its key. With want_root, only a root CA directory will
 * do. 0, or -errno after logging with the file and the cause.
 */
int fgca_issuer_load(const char *dir, bool want_root, struct fgca_issuer *out);
void fgca_issuer_free(struct fgca_issuer *issuer);

#endif /* FEDGUARD_FGCA_H */

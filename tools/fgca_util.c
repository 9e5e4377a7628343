// SPDX-License-Identifier: Apache-2.0
/* fedguard-ca's shared helpers: options, files, the CA directory layout. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "cleanup.h"
#include "fgca.h"
#include "log.h"
#include "ssl_cleanup.h"
#include "svid.h"

enum {
	FGCA_OPTS_MAX = 16,
};

static const struct option fgca_common_opts[] = {
	{"help", no_argument, NULL, 'h'},
	{"json", no_argument, NULL, 'j'},
};

void fgca_usage(const struct fgca_cmd *cmd)
{
	printf("Usage: fedguard-ca %s %s\n\n%s.\n\nOptions:\n%s"
	       "  -j, --json              JSON output\n"
	       "  -h, --help              this help\n",
	       cmd->name, cmd->synopsis, cmd->help, cmd->opts_help);
}

int fgca_usage_error(const struct fgca_cmd *cmd, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s: %s (see 'fedguard-ca %s --help')", cmd->name, msg, cmd->name);
	return FGCA_USAGE;
}

/* The command's options followed by the common ones, into opts. */
static void fgca_merge_opts(const struct fgca_cmd *cmd, struct option *opts)
{
	size_t i = 0, j;

	for (j = 0; cmd->opts && cmd->opts[j].name && i < FGCA_OPTS_MAX - 3; j++)
		opts[i++] = cmd->opts[j];
	for (j = 0; j < sizeof(fgca_common_opts) / sizeof(fgca_common_opts[0]); j++)
		opts[i++] = fgca_common_opts[j];
	memset(&opts[i], 0, sizeof(opts[i]));
}

int fgca_getopt(const struct fgca_cmd *cmd, int argc, char **argv, bool *json)
{
	struct option opts[FGCA_OPTS_MAX];
	int c;

	fgca_merge_opts(cmd, opts);
	opterr = 0;
	c = getopt_long(argc, argv, ":hj", opts, NULL);
	switch (c) {
	case 'h':
		fgca_usage(cmd);
		return FGCA_HELP;
	case 'j':
		*json = true;
		return fgca_getopt(cmd, argc, argv, json);
	case '?':
		if (optopt)
			return -fgca_usage_error(cmd, "unknown option '-%c'", optopt);
		return -fgca_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
	case ':':
		if (optopt && optopt < 256)
			return -fgca_usage_error(cmd, "option '-%c' needs an argument", optopt);
		return -fgca_usage_error(cmd, "option '%s' needs an argument", argv[optind - 1]);
	default:
		return c;
	}
}

int fgca_parse_u64(const struct fgca_cmd *cmd, const char *opt, const char *arg, uint64_t min,
		   uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || *end || errno || v < min || v > max)
		return fgca_usage_error(cmd, "%s '%s': expected a whole number from %llu to %llu",
					opt, arg, (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

static void fgca_json_put(json_object **o)
{
	json_object_put(*o);
}

static void fgca_report_json(const char *kind, const char *spiffe_id, const char *td,
			     const char *expiry, const struct fgca_file *files, size_t n)
{
	__attribute__((cleanup(fgca_json_put))) json_object *o = json_object_new_object();
	json_object *f = json_object_new_object();
	size_t i;

	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(o, "spiffe_id", json_object_new_string(spiffe_id));
	json_object_object_add(o, "trust_domain", json_object_new_string(td));
	json_object_object_add(o, "not_after", json_object_new_string(expiry));
	for (i = 0; i < n; i++)
		json_object_object_add(f, files[i].what, json_object_new_string(files[i].path));
	json_object_object_add(o, "files", f);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
}

void fgca_report(bool json, const char *kind, const char *spiffe_id, const char *td,
		 time_t not_after, const struct fgca_file *files, size_t n)
{
	char expiry[32];
	size_t i;

	fgca_time(not_after, expiry, sizeof(expiry));
	if (json) {
		fgca_report_json(kind, spiffe_id, td, expiry, files, n);
		return;
	}
	printf("issued %s '%s' of trust domain '%s', valid until %s:\n",
	       !strcmp(kind, "root")   ? "the root CA"
	       : !strcmp(kind, "node") ? "the node CA and SVID of"
				       : "the SVID",
	       spiffe_id, td, expiry);
	for (i = 0; i < n; i++)
		printf("  %-16s %s\n", files[i].what, files[i].path);
}

int fgca_push(STACK_OF(X509) *certs, X509 *cert)
{
	if (!certs || !sk_X509_push(certs, cert))
		return -ENOMEM;
	X509_up_ref(cert);
	return 0;
}

const char *fgca_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "@%lld", (long long)t);
	return buf;
}

int fgca_path(char *buf, const char *dir, const char *name)
{
	if (snprintf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		return log_error_errno(-ENAMETOOLONG, "'%s/%s'", dir, name);
	return 0;
}

int fgca_mkdir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return log_error_errno(-errno, "cannot create directory '%s'", dir);
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return log_error_errno(-ENOTDIR, "'%s'", dir);
	return 0;
}

int fgca_check_absent(const char *dir, const char *const *names, bool force)
{
	char path[PATH_MAX];
	int r;

	for (; !force && *names; names++) {
		r = fgca_path(path, dir, *names);
		if (r)
			return r;
		if (access(path, F_OK) == 0) {
			log_error("'%s' exists: refusing to overwrite it (--force replaces it)",
				  path);
			return -EEXIST;
		}
	}
	return 0;
}

/* Writes len bytes of data to fd: 0 or -errno. */
static int fgca_write_all(int fd, const char *data, size_t len)
{
	ssize_t n;

	while (len) {
		n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Moves the finished temporary file tmp to path: rename with force, else link. */
static int fgca_install(const char *tmp, const char *path, bool force)
{
	if (force && rename(tmp, path))
		return log_error_errno(-errno, "cannot rename '%s' to '%s'", tmp, path);
	if (force)
		return 0;
	if (link(tmp, path) == 0) {
		unlink(tmp);
		return 0;
	}
	if (errno != EEXIST)
		return log_error_errno(-errno, "cannot create '%s'", path);
	log_error("'%s' exists: refusing to overwrite it (--force replaces it)", path);
	return -EEXIST;
}

/* Writes data to dir/name with mode through a temporary file in dir. */
static int fgca_write_file(const char *dir, const char *name, const char *data, size_t len,
			   mode_t mode, bool force)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	_cleanup_close_ int fd = -1;
	int r;

	r = fgca_path(path, dir, name);
	if (r)
		return r;
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >= (int)sizeof(tmp))
		return log_error_errno(-ENAMETOOLONG, "'%s'", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot create a file in '%s'", dir);
	r = fchmod(fd, mode) ? -errno : fgca_write_all(fd, data, len);
	if (!r && fsync(fd))
		r = -errno;
	if (!r)
		r = fgca_install(tmp, path, force);
	else
		log_error_errno(r, "cannot write '%s'", path);
	if (r)
		unlink(tmp);
	return r;
}

/* The bytes of a memory BIO written to dir/name. */
static int fgca_write_bio(const char *dir, const char *name, BIO *bio, mode_t mode, bool force)
{
	char *data;
	long len = BIO_get_mem_data(bio, &data);

	if (len <= 0)
		return log_error_errno(-ENOMEM, "cannot encode '%s/%s'", dir, name);
	return fgca_write_file(dir, name, data, (size_t)len, mode, force);
}

int fgca_write_certs(const char *dir, const char *name, STACK_OF(X509) *certs, bool force)
{
	_cleanup_bio_ BIO *bio = BIO_new(BIO_s_mem());
	int i;

	for (i = 0; bio && i < sk_X509_num(certs); i++)
		if (!PEM_write_bio_X509(bio, sk_X509_value(certs, i)))
			return log_error_errno(-ENOMEM, "cannot encode '%s/%s'", dir, name);
	if (!bio)
		return log_error_errno(-ENOMEM, "cannot encode '%s/%s'", dir, name);
	return fgca_write_bio(dir, name, bio, 0644, force);
}

int fgca_write_key(const char *dir, const char *name, EVP_PKEY *key, bool force)
{
	_cleanup_bio_ BIO *bio = BIO_new(BIO_s_mem());

	if (!bio || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
		return log_error_errno(-ENOMEM, "cannot encode '%s/%s'", dir, name);
	return fgca_write_bio(dir, name, bio, 0600, force);
}

int fgca_write_pubkey(const char *dir, const char *name, EVP_PKEY *key, bool force)
{
	_cleanup_bio_ BIO *bio = BIO_new(BIO_s_mem());

	if (!bio || !PEM_write_bio_PUBKEY(bio, key))
		return log_error_errno(-ENOMEM, "cannot encode '%s/%s'", dir, name);
	return fgca_write_bio(dir, name, bio, 0644, force);
}

/* Which CA dir holds: 1 a root, 0 a node CA; -errno after logging. */
static int fgca_issuer_kind(const char *dir, bool want_root)
{
	char root[PATH_MAX], node[PATH_MAX];
	bool has_root, has_node;

	if (fgca_path(root, dir, FGCA_ROOT_CERT) || fgca_path(node, dir, FGCA_NODE_CA_CERT))
		return -ENAMETOOLONG;
	has_root = access(root, F_OK) == 0;
	has_node = access(node, F_OK) == 0;
	if (has_root && has_node) {
		log_error("'%s' holds both a root CA (" FGCA_ROOT_CERT
			  ") and a node CA (" FGCA_NODE_CA_CERT
			  "): keep them in separate directories",
			  dir);
		return -EINVAL;
	}
	if (want_root && !has_root) {
		log_error("'%s' holds no root CA: no '%s' (made by 'fedguard-ca init')", dir, root);
		return -ENOENT;
	}
	if (!has_root && !has_node) {
		log_error("'%s' holds no CA: neither " FGCA_ROOT_CERT
			  " (fedguard-ca init) nor " FGCA_NODE_CA_CERT " (fedguard-ca issue-node)",
			  dir);
		return -ENOENT;
	}
	return has_root;
}

/* The checks of a loaded CA: its key, CA:TRUE with keyCertSign, a trust domain. */
static int fgca_issuer_check(struct fgca_issuer *is, const char *key_path)
{
	char why[SVID_WHY_MAX];

	if (X509_check_private_key(is->cert, is->key) != 1) {
		ERR_clear_error();
		log_error("'%s' is not the key of '%s'", key_path, is->cert_path);
		return -EINVAL;
	}
	if (!(X509_get_extension_flags(is->cert) & EXFLAG_CA) ||
	    !(X509_get_key_usage(is->cert) & KU_KEY_CERT_SIGN)) {
		log_error("'%s' is not a CA certificate (CA:TRUE, keyCertSign)", is->cert_path);
		return -EINVAL;
	}
	if (ca_cert_trust_domain(is->cert, is->td, why, sizeof(why))) {
		log_error("'%s': %s", is->cert_path, why);
		return -EINVAL;
	}
	return 0;
}

int fgca_issuer_load(const char *dir, bool want_root, struct fgca_issuer *out)
{
	struct fgca_issuer is = {};
	char key_path[PATH_MAX], why[SVID_WHY_MAX];
	int kind, r;

	kind = fgca_issuer_kind(dir, want_root);
	if (kind < 0)
		return kind;
	is.is_root = kind;
	if (fgca_path(is.cert_path, dir, is.is_root ? FGCA_ROOT_CERT : FGCA_NODE_CA_CERT) ||
	    fgca_path(key_path, dir, is.is_root ? FGCA_ROOT_KEY : FGCA_NODE_CA_KEY))
		return -ENAMETOOLONG;
	r = svid_load_chain(is.cert_path, &is.file, why, sizeof(why));
	if (r) {
		log_error("%s", why);
		return r;
	}
	is.cert = sk_X509_value(is.file, 0);
	X509_up_ref(is.cert);
	r = svid_load_key(key_path, &is.key, why, sizeof(why));
	if (r)
		log_error("%s", why);
	if (!r)
		r = fgca_issuer_check(&is, key_path);
	if (r) {
		fgca_issuer_free(&is);
		return r;
	}
	*out = is;
	return 0;
}

void fgca_issuer_free(struct fgca_issuer *issuer)
{
	X509_free(issuer->cert);
	EVP_PKEY_free(issuer->key);
	sk_X509_pop_free(issuer->file, X509_free);
	issuer->cert = NULL;
	issuer->key = NULL;
	issuer->file = NULL;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl policy sign, and the signature that policy apply sends: a
 * detached signature file next to the policy (docs/policy.md, "Signed
 * policies"). Signing needs no agent: it reads the file and the mesh's
 * policy key, nothing else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "control.h"
#include "ctl.h"
#include "ctl_util.h"
#include "log.h"
#include "policy_parse.h"
#include "policy_sign.h"
#include "ssl_cleanup.h"

/* The argument of the verb's option opt, the last one given; NULL when absent. */
static const char *opt_arg(const struct ctl *ctl, int opt)
{
	const char *arg = NULL;
	size_t i;

	for (i = 0; i < ctl->nopts; i++)
		if (ctl->opts[i].opt == opt)
			arg = ctl->opts[i].arg;
	return arg;
}

int ctl_policy_signature(const struct ctl *ctl, const char *file, char **sig)
{
	const char *path = opt_arg(ctl, CTL_OPT_SIGNATURE);
	_cleanup_free_ char *def = NULL;
	size_t len;

	if (!path) {
		if (asprintf(&def, "%s.sig", file) < 0)
			return -ENOMEM;
		if (access(def, F_OK)) {
			*sig = NULL;
			return 0;
		}
		path = def;
	}
	return ctl_read_file(path, POLICY_SIG_TEXT_MAX, sig, &len);
}

/* Writes text to path atomically (a temporary file next to it, then rename). */
static int write_sig(const char *path, const char *text)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	size_t len = strlen(text);
	int r = 0;

	if (!strcmp(path, "-"))
		return fputs(text, stdout) < 0 ? -EIO : 0;
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot create a file next to '%s'", path);
	if (fchmod(fd, 0644) || write(fd, text, len) != (ssize_t)len || fsync(fd) ||
	    rename(tmp, path))
		r = errno ? -errno : -EIO;
	if (r) {
		unlink(tmp);
		return log_error_errno(r, "cannot write '%s'", path);
	}
	return 0;
}

static void print_signed(const struct ctl *ctl, const char *file, size_t len, const char *fp,
			 __u64 version, const char *out)
{
	struct json_object *o;

	if (!strcmp(out, "-"))
		return; /* stdout holds the signature */
	if (!ctl->json) {
		printf("signed '%s' (policy version %llu, %zu bytes) with key %s: '%s'\n", file,
		       (unsigned long long)version, len, fp, out);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "file", json_object_new_string(file));
	json_object_object_add(o, "version", json_object_new_int64((int64_t)version));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)len));
	json_object_object_add(o, "key", json_object_new_string(fp));
	json_object_object_add(o, "signature", json_object_new_string(out));
	ctl_print_json(o);
	json_object_put(o);
}

/* Reads and parses the policy, so that only a valid document is signed. */
static int read_policy(const char *file, char **text, size_t *len, __u64 *version)
{
	_cleanup_policy_doc_ struct policy_doc *doc = NULL;
	_cleanup_free_ char *buf = NULL;
	struct policy_error perr;
	size_t n;
	int r;

	r = ctl_read_file(file, CONTROL_REQUEST_MAX, &buf, &n);
	if (r)
		return r;
	if (strlen(buf) != n)
		return log_error_errno(-EINVAL, "policy file '%s' contains a NUL byte", file);
	if (policy_parse_buffer(file, buf, n, &doc, &perr))
		return log_error_errno(-EINVAL, "not signed: %s", perr.msg);
	*version = doc->version;
	*len = n;
	*text = take_ptr(buf);
	return 0;
}

int ctl_policy_sign(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"FILE", NULL};
	const char *key_path = opt_arg(ctl, CTL_OPT_KEY), *out = opt_arg(ctl, CTL_OPT_OUT);
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	_cleanup_free_ char *text = NULL, *sig = NULL, *def = NULL;
	char why[POLICY_SIG_WHY_MAX], fp[POLICY_KEY_FP_MAX];
	__u64 version = 0;
	size_t len = 0;
	int r;

	r = ctl_positional("policy sign", argc, argv, names);
	if (r)
		return r;
	if (!key_path) {
		log_error(
			"policy sign: --key KEY is required (see 'fedguardctl policy sign --help')");
		return CTL_USAGE;
	}
	if (!out && asprintf(&def, "%s.sig", argv[0]) < 0)
		return -ENOMEM;
	out = out ? out : def;

	r = policy_key_load_private(key_path, &key, why, sizeof(why));
	if (r)
		return log_error_errno(r, "%s", why);
	r = read_policy(argv[0], &text, &len, &version);
	if (r)
		return r;
	r = policy_sign(text, len, key, &sig);
	if (!r)
		r = policy_key_fingerprint(key, fp);
	if (r)
		return log_error_errno(r, "cannot sign '%s' with '%s'", argv[0], key_path);
	r = write_sig(out, sig);
	if (r)
		return r;
	print_signed(ctl, argv[0], len, fp, version, out);
	return 0;
}

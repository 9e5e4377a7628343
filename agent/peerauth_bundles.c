// SPDX-License-Identifier: Apache-2.0
/*
 * The trust bundles of fedguardd: read at start from --bundle TD=FILE and
 * from what bundle.set and bundle.del left in <state-dir>/bundles, changed
 * at run time by those commands, and handed to the authentication engine
 * as an immutable trust.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "agent.h"
#include "auth.h"
#include "bundle.h"
#include "cleanup.h"
#include "control.h"
#include "fed.h"
#include "log.h"
#include "peerauth_int.h"

#define SET_SUFFIX     ".json"
#define DELETED_SUFFIX ".deleted"

void peerauth_bundles_dir(const struct agent *a, char *buf, size_t len)
{
	snprintf(buf, len, "%s/bundles", a->state_dir);
}

/* Whether a file starts (after blanks) with "-----BEGIN": PEM roots, not a bundle. */
static bool is_pem(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char buf[64] = "";
	size_t n, i = 0;

	if (!f)
		return false;	/* the bundle loader says why */
	n = fread(buf, 1, sizeof(buf) - 1, f);
	while (i < n && strchr(" \t\r\n", buf[i]))
		i++;
	return strncmp(buf + i, "-----BEGIN", 10) == 0;
}

/* One --bundle TD=FILE: a SPIFFE bundle, or a PEM file of the trust domain's roots. */
static int load_arg(const char *arg, struct bundle **out)
{
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1], why[BUNDLE_WHY_MAX];
	const char *eq = strchr(arg, '='), *path;
	int r;

	if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) > SPIFFE_TRUST_DOMAIN_MAX) {
		log_error("option --bundle '%s': expected TD=FILE", arg);
		return -EINVAL;
	}
	snprintf(td, sizeof(td), "%.*s", (int)(eq - arg), arg);
	path = eq + 1;
	if (spiffe_td_valid(td, why, sizeof(why))) {
		log_error("option --bundle '%s': trust domain '%s': %s", arg, td, why);
		return -EINVAL;
	}
	if (is_pem(path))
		r = bundle_from_pem_file(td, path, out, why, sizeof(why));
	else
		r = bundle_load_file(td, path, out, why, sizeof(why));
	if (r)
		return log_error_errno(r, "%s", why);
	return 0;
}

static int put_bundle(struct bundle_set *set, struct bundle *b)
{
	int r = bundle_set_replace(set, b->td, b);

	if (r)
		bundle_free(b);
	return r;
}

/* What bundle.set and bundle.del recorded: it overrides the command line. */
static int load_runtime(struct agent *a, struct bundle_set *set)
{
	char dir[PATH_MAX], path[PATH_MAX + 256], td[SPIFFE_TRUST_DOMAIN_MAX + 16], why[BUNDLE_WHY_MAX];
	_cleanup_closedir_ DIR *d = NULL;
	struct bundle *b;
	struct dirent *e;
	size_t n;

	peerauth_bundles_dir(a, dir, sizeof(dir));
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : log_error_errno(-errno, "bundles in '%s'", dir);
	while ((e = readdir(d))) {
		n = strlen(e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (n > strlen(DELETED_SUFFIX) && n - strlen(DELETED_SUFFIX) < sizeof(td) &&
		    !strcmp(e->d_name + n - strlen(DELETED_SUFFIX), DELETED_SUFFIX)) {
			snprintf(td, sizeof(td), "%.*s", (int)(n - strlen(DELETED_SUFFIX)), e->d_name);
			if (bundle_set_delete(set, td) == 0)
				log_warn("bundle of '%s': deleted at run time ('%s'), not loaded", td,
					 path);
			continue;
		}
		if (n <= strlen(SET_SUFFIX) || n - strlen(SET_SUFFIX) >= sizeof(td) ||
		    strcmp(e->d_name + n - strlen(SET_SUFFIX), SET_SUFFIX))
			continue;
		snprintf(td, sizeof(td), "%.*s", (int)(n - strlen(SET_SUFFIX)), e->d_name);
		if (bundle_load_file(td, path, &b, why, sizeof(why)))
			return log_error_errno(-EINVAL, "%s", why);
		log_info("bundle of '%s': set at run time, from '%s'", td, path);
		if (put_bundle(set, b))
			return -ENOMEM;
	}
	return 0;
}

int peerauth_bundles_load(struct agent *a, const struct peerauth_opts *o)
{
	struct peerauth *p = a->auth;
	struct bundle *b;
	int r;

	r = bundle_set_new(&p->bundles);
	if (r)
		return r;
	for (unsigned int i = 0; i < o->n_bundles; i++) {
		r = load_arg(o->bundles[i], &b);
		if (!r && bundle_set_lookup(p->bundles, b->td)) {
			log_error("option --bundle: trust domain '%s' given twice", b->td);
			bundle_free(b);
			r = -EINVAL;
		}
		if (!r)
			r = put_bundle(p->bundles, b);
		if (r)
			return r;
	}
	r = load_runtime(a, p->bundles);
	if (r)
		return r;
	if (!bundle_set_lookup(p->bundles, p->td)) {
		log_error("no bundle for the agent's own trust domain '%s': give --bundle %s=FILE",
			  p->td, p->td);
		return -EINVAL;
	}
	return 0;
}

int peerauth_trust_update(struct agent *a)
{
	struct auth_trust *t;
	int r = auth_trust_new(a->auth->bundles, &t);

	if (r)
		return log_error_errno(r, "trust bundles");
	auth_engine_set_trust(a->auth->engine, t);
	fed_trust_changed(a);	/* the links' authorities and the bundle endpoint's document */
	return 0;
}

/* --- persistence of run-time changes ----------------------------------------------------- */

static int write_atomic(const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	_cleanup_close_ int fd = -1;
	size_t len = strlen(text);
	int r = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd))
		r = errno ? -errno : -EIO;
	if (!r && rename(tmp, path))
		r = -errno;
	if (r)
		unlink(tmp);
	return r;
}

/* Records b as td's bundle (or, b NULL, td's deletion) in <state-dir>/bundles. */
static int persist(struct agent *a, const char *td, const struct bundle *b)
{
	char dir[PATH_MAX], set[PATH_MAX + 300], del[PATH_MAX + 300];
	_cleanup_free_ char *json = NULL;
	int r;

	peerauth_bundles_dir(a, dir, sizeof(dir));
	if (mkdir(a->state_dir, 0700) && errno != EEXIST)
		return -errno;
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	snprintf(set, sizeof(set), "%s/%s" SET_SUFFIX, dir, td);
	snprintf(del, sizeof(del), "%s/%s" DELETED_SUFFIX, dir, td);
	if (b) {
		r = bundle_write(b, &json);
		if (!r)
			r = write_atomic(set, json);
		if (!r && unlink(del) && errno != ENOENT)
			r = -errno;
		return r;
	}
	r = write_atomic(del, "");
	if (!r && unlink(set) && errno != ENOENT)
		r = -errno;
	return r;
}

/* --- commands ------------------------------------------------------------------------------ */

static int need_auth(struct agent *a, struct control_error *err)
{
	if (a->auth)
		return 0;
	return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
				 "fedguardd runs without --trust-domain: it keeps no trust bundles");
}

/* Whether two bundles have the same authorities, in the same order. */
static bool same_authorities(const struct bundle *x, const struct bundle *y)
{
	int n = sk_X509_num(x->authorities);

	if (x->revoked != y->revoked || n != sk_X509_num(y->authorities))
		return false;
	for (int i = 0; i < n; i++)
		if (X509_cmp(sk_X509_value(x->authorities, i), sk_X509_value(y->authorities, i)))
			return false;
	return true;
}

static void bundle_json(const struct bundle *b, const char *own, struct json_object *o)
{
	json_object_object_add(o, "trust_domain", json_object_new_string(b->td));
	json_object_object_add(o, "authorities",
			       json_object_new_int(sk_X509_num(b->authorities)));
	json_object_object_add(o, "sequence", b->has_sequence
						      ? json_object_new_int64((int64_t)b->sequence)
						      : NULL);
	json_object_object_add(o, "refresh_hint",
			       b->has_refresh_hint ? json_object_new_int64((int64_t)b->refresh_hint)
						   : NULL);
	json_object_object_add(o, "revoked", json_object_new_boolean(b->revoked));
	json_object_object_add(o, "own", json_object_new_boolean(strcmp(b->td, own) == 0));
}

/* Takes in the new trust and removes what the old one authenticated. */
static int retrust(struct agent *a, const char *td, bool cut, struct json_object *result,
		   struct control_error *err)
{
	unsigned int removed, destroyed;
	int r = peerauth_trust_update(a);

	if (!r)
		r = peerauth_drop_trust_domain(a, td, cut, &removed, &destroyed);
	if (r)
		return control_error_set(err, CONTROL_E_INTERNAL, "trust domain '%s': %s", td,
					 strerror(-r));
	json_object_object_add(result, "auth_removed", json_object_new_int64(removed));
	json_object_object_add(result, "sockets_destroyed", json_object_new_int64(destroyed));
	log_info("trust domain '%s': %u authentications removed, %u sockets destroyed", td,
		 removed, destroyed);
	if (!cut)	/* still trusted: authenticate again what policy wants */
		peerauth_state_changed(a);
	return 0;
}

int peerauth_bundle_set(struct agent *a, const char *td, const char *json, size_t len,
			struct json_object *result, struct control_error *err)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	const struct bundle *old;
	char why[BUNDLE_WHY_MAX];
	bool changed;
	int r;

	r = need_auth(a, err);
	if (r)
		return r;
	if (bundle_parse(td, json, len, &b, why, sizeof(why)))
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT, "%s", why);
	old = bundle_set_lookup(a->auth->bundles, td);
	if (old && old->has_sequence && b->has_sequence && b->sequence < old->sequence)
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "bundle of '%s': spiffe_sequence %llu is older than the "
					 "%llu in force", td, (unsigned long long)b->sequence,
					 (unsigned long long)old->sequence);
	changed = !old || !same_authorities(old, b);
	r = persist(a, td, b);
	if (r)
		return control_error_set(err, CONTROL_E_INTERNAL, "bundle of '%s' in '%s': %s", td,
					 a->state_dir, strerror(-r));
	bundle_json(b, a->auth->td, result);
	if (bundle_set_replace(a->auth->bundles, td, b))
		return control_error_set(err, CONTROL_E_INTERNAL, "out of memory");
	b = NULL;	/* the set's now */
	old = bundle_set_lookup(a->auth->bundles, td);
	log_info("bundle of '%s' set: %d authorities%s", td, sk_X509_num(old->authorities),
		 old->revoked ? ", revoked" : "");
	if (changed)
		return retrust(a, td, old->revoked, result, err);
	/* the same authorities: what they authenticated stays */
	json_object_object_add(result, "auth_removed", json_object_new_int64(0));
	json_object_object_add(result, "sockets_destroyed", json_object_new_int64(0));
	return peerauth_trust_update(a);
}

int peerauth_bundle_del(struct agent *a, const char *td, struct json_object *result,
			struct control_error *err)
{
	int r = need_auth(a, err);

	if (r)
		return r;
	if (strcmp(td, a->auth->td) == 0)
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "'%s' is this node's own trust domain: its bundle cannot "
					 "be deleted (set a revoked one, with empty keys, to stop "
					 "trusting it)", td);
	if (!bundle_set_lookup(a->auth->bundles, td))
		return control_error_set(err, CONTROL_E_NOT_FOUND, "no bundle for trust domain '%s'",
					 td);
	r = persist(a, td, NULL);
	if (r)
		return control_error_set(err, CONTROL_E_INTERNAL, "bundle of '%s' in '%s': %s", td,
					 a->state_dir, strerror(-r));
	bundle_set_delete(a->auth->bundles, td);
	log_info("bundle of '%s' deleted", td);
	json_object_object_add(result, "trust_domain", json_object_new_string(td));
	r = retrust(a, td, true, result, err);
	if (!r)
		fed_trust_domain_removed(a, td, result);	/* its endpoints and quarantines */
	return r;
}

bool peerauth_bundle_deleted(const struct agent *a, const char *td)
{
	char dir[PATH_MAX], path[PATH_MAX + SPIFFE_TRUST_DOMAIN_MAX + 16];

	peerauth_bundles_dir(a, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s" DELETED_SUFFIX, dir, td);
	return access(path, F_OK) == 0;
}

int peerauth_bundle_list(struct agent *a, struct json_object *result)
{
	struct json_object *list = json_object_new_array();

	for (size_t i = 0; a->auth && i < bundle_set_count(a->auth->bundles); i++) {
		struct json_object *o = json_object_new_object();

		bundle_json(bundle_set_at(a->auth->bundles, i), a->auth->td, o);
		json_object_array_add(list, o);
	}
	json_object_object_add(result, "bundles", list);
	return 0;
}

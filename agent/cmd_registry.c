// SPDX-License-Identifier: Apache-2.0
/*
 * workload.* and endpoint.*: who lives where. A workload is a local cgroup
 * (and its addresses); an endpoint is a remote identity's addresses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fedguard/abi.h>

#include "addr.h"
#include "agent.h"
#include "cleanup.h"
#include "commands.h"
#include "loader.h"
#include "peerauth.h"
#include "spiffe.h"
#include "state.h"
#include "sys.h"

#define NSFS_MAGIC_NUMBER 0x6e736673
#define LABEL_KEY_MAX 63
#define LABEL_VALUE_MAX 253

int command_spiffe_id(struct json_object *args, const char *name, const char **out,
		      struct control_error *err)
{
	struct spiffe_id sid;
	char why[256];
	int r;

	r = control_arg_string(args, name, true, out, err);
	if (r)
		return r;
	if (spiffe_parse(*out, &sid, why, sizeof(why)))
		return control_error_set(err, "invalid_argument", "%s: %s", name, why);
	return 0;
}

int command_number_identity(struct json_object *next, const char *id, __u32 *num,
			   struct control_error *err)
{
	struct spiffe_id sid;
	char td[256];
	__u32 tdnum;

	spiffe_parse(id, &sid, NULL, 0);
	snprintf(td, sizeof(td), "%.*s", (int)sid.td_len, sid.td);
	if (state_identity(next, id, num) || state_trust_domain(next, td, &tdnum))
		return control_error_set(err, "internal", "no identity numbers left");
	return 0;
}

static bool label_key_valid(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > LABEL_KEY_MAX)
		return false;
	return strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") == n;
}

static bool label_value_valid(const char *v)
{
	size_t n = strlen(v);

	if (n > LABEL_VALUE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
			return false;
	return true;
}

/* labels: an object of strings with valid keys, copied into @reg. */
static int take_labels(struct json_object *args, struct json_object *reg,
		       struct control_error *err)
{
	struct json_object *labels = NULL;
	int r = control_arg_object(args, "labels", false, &labels, err);

	if (r || !labels)
		return r;
	json_object_object_foreach(labels, k, v)
	{
		if (!label_key_valid(k))
			return control_error_set(err, "invalid_argument",
						 "label key '%s': 1 to %d of A-Z a-z 0-9 . _ / -",
						 k, LABEL_KEY_MAX);
		if (!json_object_is_type(v, json_type_string) ||
		    !label_value_valid(json_object_get_string(v)))
			return control_error_set(err, "invalid_argument",
						 "label '%s': the value must be a string of up to "
						 "%d printable ASCII characters", k, LABEL_VALUE_MAX);
	}
	json_object_object_add(reg, "labels", json_object_get(labels));
	return 0;
}

/* Who else holds @prefix (a registration other than @self), or NULL. */
static const char *address_owner(struct json_object *state, const struct fg_ipcache_key *prefix,
				 const char *self)
{
	static const char *const sections[] = { "workloads", "endpoints" };

	for (size_t s = 0; s < 2; s++) {
		json_object_object_foreach(state_section(state, sections[s]), id, reg)
		{
			struct json_object *ips = json_object_object_get(reg, "ips");

			for (size_t i = 0; ips && i < json_object_array_length(ips); i++) {
				struct fg_ipcache_key k;
				const char *t = json_object_get_string(json_object_array_get_idx(ips, i));

				if (strcmp(id, self) && addr_parse_prefix(t, &k) == 0 &&
				    memcmp(&k, prefix, sizeof(k)) == 0)
					return id;
			}
		}
	}
	return NULL;
}

/* ips: addresses (hosts only when @hosts), canonical, owned by nobody else. */
static int take_ips(struct json_object *state, struct json_object *args, const char *self,
		    bool hosts, bool required, struct json_object *reg, struct control_error *err)
{
	_cleanup_free_ const char **ips = NULL;
	struct json_object *out = json_object_new_array();
	size_t n = 0;
	int r = control_arg_string_array(args, "ips", required, &ips, &n, err);

	json_object_object_add(reg, "ips", out);
	for (size_t i = 0; !r && i < n; i++) {
		struct fg_ipcache_key k;
		const char *owner;
		char canon[64];

		if (addr_parse_prefix(ips[i], &k) ||
		    (hosts && k.prefixlen != FG_IPCACHE_PREFIX_BASE +
						   (k.family == FG_AF_INET ? 32 : 128)))
			return control_error_set(err, "invalid_argument", "ips: '%s' is not %s",
						 ips[i],
						 hosts ? "an IPv4 or IPv6 address"
						       : "an address or prefix ADDR/LEN");
		owner = address_owner(state, &k, self);
		if (owner)
			return control_error_set(err, "exists", "ips: '%s' belongs to '%s'", ips[i],
						 owner);
		addr_format_prefix(&k, canon, sizeof(canon));
		json_object_array_add(out, json_object_new_string(canon));
	}
	if (!r && required && n == 0)
		return control_error_set(err, "invalid_argument", "ips: at least one address");
	return r;
}

/* cgroup: an existing cgroup of the managed subtree, used by no other workload. */
static int take_cgroup(struct agent *a, struct json_object *args, const char *self,
		       struct json_object *reg, struct control_error *err)
{
	const char *root = a->loader->cgroup.path, *path;
	struct sys_cgroup cg;
	size_t n = strlen(root);
	int r = control_arg_string(args, "cgroup", true, &path, err);

	if (r)
		return r;
	if (sys_cgroup_resolve(path, &cg))
		return control_error_set(err, "invalid_argument",
					 "cgroup '%s': not a cgroup v2 directory", path);
	if (strncmp(cg.path, root, n) || (cg.path[n] && cg.path[n] != '/'))
		return control_error_set(err, "invalid_argument",
					 "cgroup '%s' is outside the managed subtree '%s'", cg.path,
					 root);
	json_object_object_foreach(state_section(a->state, "workloads"), id, w)
	{
		struct json_object *v = json_object_object_get(w, "cgroup_id");

		if (strcmp(id, self) && v && (__u64)json_object_get_int64(v) == cg.id)
			return control_error_set(err, "exists", "cgroup '%s' belongs to '%s'",
						 cg.path, id);
	}
	json_object_object_add(reg, "cgroup", json_object_new_string(cg.path));
	json_object_object_add(reg, "cgroup_id", json_object_new_int64((int64_t)cg.id));
	return 0;
}

static int take_netns(struct json_object *args, struct json_object *reg,
		      struct control_error *err)
{
	const char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct statfs sf;
	int r = control_arg_string(args, "netns", false, &path, err);

	if (r || !path)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return control_error_set(err, "invalid_argument", "netns '%s': %s", path,
					 strerror(errno));
	if (fstatfs(fd, &sf) || sf.f_type != NSFS_MAGIC_NUMBER)
		return control_error_set(err, "invalid_argument",
					 "netns '%s' is not a namespace file (such as "
					 "/var/run/netns/NAME or /proc/PID/ns/net)", path);
	json_object_object_add(reg, "netns", json_object_new_string(path));
	return 0;
}

/*
 * With --trust-domain, a workload must be of that trust domain: the node
 * mints its SVID, and a node vouches only for its own trust domain.
 */
static int take_own_trust_domain(struct agent *a, const char *id, struct control_error *err)
{
	const char *td = peerauth_trust_domain(a);
	struct spiffe_id sid;

	if (!td || (spiffe_parse(id, &sid, NULL, 0) == 0 && spiffe_in_trust_domain(&sid, td)))
		return 0;
	return control_error_set(err, "invalid_argument",
				 "'%s' is not in trust domain '%s' of this node: a node vouches "
				 "only for its own trust domain (register it on a node of its own, "
				 "or as an endpoint here)", id, td);
}

/* Registers @reg under @id in @section; the same registration again is no change. */
static int put_registration(struct agent *a, const char *section, const char *id,
			    struct json_object *reg, struct json_object *result,
			    struct control_error *err)
{
	struct json_object *old, *next;
	__u32 num;
	int r;

	if (json_object_object_get_ex(state_section(a->state, section), id, &old) &&
	    !json_object_equal(old, reg)) {
		json_object_put(reg);
		return control_error_set(err, "exists",
					 "'%s' is registered with other parameters: delete it "
					 "first", id);
	}
	next = state_copy(a->state);
	if (!next) {
		json_object_put(reg);
		return control_error_set(err, "internal", "out of memory");
	}
	state_put(next, section, id, reg);
	r = command_number_identity(next, id, &num, err);
	if (!r)
		r = agent_commit(a, next, err);
	else
		json_object_put(next);
	if (r)
		return r;
	json_object_object_add(result, "spiffe_id", json_object_new_string(id));
	json_object_object_add(result, "identity", json_object_new_int64(num));
	return 0;
}

COMMAND(cmd_workload_add)
{
	struct agent *a = ctx;
	struct json_object *reg = json_object_new_object(), *v;
	const char *id;
	int r;

	r = command_spiffe_id(args, "spiffe_id", &id, err);
	if (!r && json_object_object_get_ex(state_section(a->state, "endpoints"), id, &v))
		r = control_error_set(err, "exists", "'%s' is a remote endpoint", id);
	if (!r)
		r = take_own_trust_domain(a, id, err);
	if (!r)
		r = take_cgroup(a, args, id, reg, err);
	if (!r)
		r = take_ips(a->state, args, id, true, false, reg, err);
	if (!r)
		r = take_netns(args, reg, err);
	if (!r)
		r = take_labels(args, reg, err);
	if (r) {
		json_object_put(reg);
		return r;
	}
	return put_registration(a, "workloads", id, reg, result, err);
}

int registry_endpoint_reg(struct json_object *state, const char *id, struct json_object *args,
			  struct json_object **out, struct control_error *err)
{
	struct json_object *reg = json_object_new_object(), *v;
	const char *node = NULL;
	__u8 addr[16];
	int r = 0;

	if (json_object_object_get_ex(state_section(state, "workloads"), id, &v))
		r = control_error_set(err, "exists", "'%s' is a local workload", id);
	if (!r)
		r = take_ips(state, args, id, false, true, reg, err);
	if (!r)
		r = control_arg_string(args, "node", false, &node, err);
	if (!r && node && addr_parse_node(node, addr))
		r = control_error_set(err, "invalid_argument", "node: '%s' is not an address",
				      node);
	if (!r && node)
		json_object_object_add(reg, "node", json_object_new_string(node));
	if (!r)
		r = take_labels(args, reg, err);
	if (r) {
		json_object_put(reg);
		return r;
	}
	*out = reg;
	return 0;
}

/* An endpoint the mesh store or a federation link brought cannot be changed by hand. */
static int not_managed(struct agent *a, const char *id, struct control_error *err)
{
	struct json_object *e, *origin;

	if (!json_object_object_get_ex(state_section(a->state, "endpoints"), id, &e) ||
	    !json_object_object_get_ex(e, "origin", &origin))
		return 0;
	return control_error_set(err, "exists",
				 "endpoint '%s' comes from '%s' (docs/federation.md): it is not "
				 "registered by hand here", id, json_object_get_string(origin));
}

COMMAND(cmd_endpoint_add)
{
	struct agent *a = ctx;
	struct json_object *reg;
	const char *id;
	int r;

	r = command_spiffe_id(args, "spiffe_id", &id, err);
	if (!r)
		r = not_managed(a, id, err);
	if (!r)
		r = registry_endpoint_reg(a->state, id, args, &reg, err);
	if (r)
		return r;
	return put_registration(a, "endpoints", id, reg, result, err);
}

static int del_registration(struct agent *a, const char *section, const char *what,
			    struct json_object *args, struct control_error *err)
{
	struct json_object *v, *next;
	const char *id;
	int r;

	r = control_arg_string(args, "spiffe_id", true, &id, err);
	if (r)
		return r;
	if (!json_object_object_get_ex(state_section(a->state, section), id, &v))
		return control_error_set(err, "not_found", "no %s '%s'", what, id);
	next = state_copy(a->state);
	if (!next)
		return control_error_set(err, "internal", "out of memory");
	state_put(next, section, id, NULL);
	return agent_commit(a, next, err);
}

COMMAND(cmd_workload_del)
{
	return del_registration(ctx, "workloads", "workload", args, err);
}

COMMAND(cmd_endpoint_del)
{
	struct agent *a = ctx;
	const char *id;
	int r = control_arg_string(args, "spiffe_id", true, &id, err);

	if (!r)
		r = not_managed(a, id, err);
	return r ? r : del_registration(a, "endpoints", "endpoint", args, err);
}

/* [{spiffe_id, identity, ...registration}] of one section. */
static int list_section(struct agent *a, const char *section, struct json_object *args,
			struct json_object *result, struct control_error *err)
{
	struct json_object *list = json_object_new_array();

	json_object_object_foreach(state_section(a->state, section), id, reg)
	{
		struct json_object *item = state_copy(reg);

		json_object_object_add(item, "spiffe_id", json_object_new_string(id));
		json_object_object_add(item, "identity",
				       json_object_new_int64(state_identity_find(a->state, id)));
		json_object_array_add(list, item);
	}
	json_object_object_add(result, section, list);
	return 0;
}

COMMAND(cmd_workload_list)
{
	return list_section(ctx, "workloads", args, result, err);
}

COMMAND(cmd_endpoint_list)
{
	return list_section(ctx, "endpoints", args, result, err);
}

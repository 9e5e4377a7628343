// SPDX-License-Identifier: Apache-2.0
/*
 * sockets.list, auth.list, auth.flush and bundle.*: what the kernel binds
 * sockets to, which pairs are authenticated, and whom this node trusts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <fedguard/abi.h>

#include "agent.h"
#include "cleanup.h"
#include "commands.h"
#include "peerauth.h"
#include "spiffe.h"
#include "state.h"

/* Identity numbers to SPIFFE IDs, for one reply. */
struct names {
	struct {
		__u32 num;
		const char *id;
	} *v;
	size_t n;
};

static int cmp_num(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

static int names_of(struct json_object *state, struct names *out)
{
	struct json_object *ids = state_section(state, "identities");

	out->n = 0;
	out->v = calloc((size_t)json_object_object_length(ids) + 1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	json_object_object_foreach(ids, id, num)
	{
		out->v[out->n].num = (__u32)json_object_get_int64(num);
		out->v[out->n++].id = id;
	}
	qsort(out->v, out->n, sizeof(*out->v), cmp_num);
	return 0;
}

/* The identity as its SPIFFE ID when known, else as "id:N" (node, world, forgotten). */
static struct json_object *name_json(const struct names *names, __u32 num)
{
	char buf[32];
	const struct {
		__u32 num;
		const char *id;
	} *hit = bsearch(&num, names->v, names->n, sizeof(*names->v), cmp_num);

	if (hit)
		return json_object_new_string(hit->id);
	snprintf(buf, sizeof(buf), "id:%u", num);
	return json_object_new_string(buf);
}

static struct json_object *node_json(const __u8 node[16])
{
	static const __u8 mapped[12] = { [10] = 0xff, [11] = 0xff }, none[16];
	bool v4 = memcmp(node, mapped, sizeof(mapped)) == 0;
	char buf[INET6_ADDRSTRLEN];

	if (!memcmp(node, none, 16) ||
	    !inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? node + 12 : node, buf, sizeof(buf)))
		return NULL;
	return json_object_new_string(buf);
}

static int open_map(struct agent *a, const char *name, struct control_error *err)
{
	char path[PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", a->dp.pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return control_error_set(err, CONTROL_E_INTERNAL, "map '%s': %s", path,
					 strerror(errno));
	return fd;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

/* --- sockets.list ------------------------------------------------------------------------- */

static struct json_object *socket_json(__u64 cookie, const struct fg_sock_binding *b,
				       const struct names *names)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "cookie", json_object_new_uint64(cookie));
	json_object_object_add(o, "local", name_json(names, b->local_id));
	json_object_object_add(o, "peer", name_json(names, b->peer_id));
	json_object_object_add(o, "state",
			       json_object_new_string(b->state == FG_SOCK_AUTH_WAIT ? "auth_wait"
										    : "allowed"));
	json_object_object_add(o, "direction",
			       json_object_new_string(b->dir == FG_DIR_INGRESS ? "ingress"
									       : "egress"));
	json_object_object_add(o, "port", json_object_new_int(b->port));
	json_object_object_add(o, "protocol",
			       json_object_new_string(b->proto == IPPROTO_UDP ? "udp" : "tcp"));
	json_object_object_add(o, "auth",
			       json_object_new_string(b->auth == FG_AUTH_MTLS ? "mtls" : "none"));
	json_object_object_add(o, "peer_node", node_json(b->peer_node));
	return o;
}

COMMAND(cmd_sockets_list)
{
	struct agent *a = ctx;
	_cleanup_close_ int fd = open_map(a, "fg_sockets", err);
	struct json_object *list;
	struct fg_sock_binding b;
	__u64 key, next, *prev = NULL;
	struct names names;

	if (fd < 0)
		return fd;
	if (names_of(a->state, &names))
		return control_error_set(err, CONTROL_E_INTERNAL, "out of memory");
	list = json_object_new_array();
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &b) == 0)
			json_object_array_add(list, socket_json(next, &b, &names));
		key = next;
		prev = &key;
	}
	free(names.v);
	json_object_object_add(result, "sockets", list);
	return 0;
}

/* --- auth.list, auth.flush ------------------------------------------------------------------ */

static struct json_object *auth_json(const struct fg_auth_key *k, const struct fg_auth_value *v,
				     const struct names *names, __u64 now)
{
	struct json_object *o = json_object_new_object();
	double left = ((double)v->expiry_ns - (double)now) / 1e9;

	json_object_object_add(o, "local", name_json(names, k->local_id));
	json_object_object_add(o, "peer", name_json(names, k->peer_id));
	json_object_object_add(o, "peer_node", node_json(k->peer_node));
	json_object_object_add(o, "expires_in", json_object_new_double(left > 0 ? left : 0));
	json_object_object_add(o, "valid", json_object_new_boolean(left > 0));
	return o;
}

COMMAND(cmd_auth_list)
{
	struct agent *a = ctx;
	_cleanup_close_ int fd = open_map(a, "fg_auth", err);
	struct fg_auth_key key, next, *prev = NULL;
	struct fg_auth_value v;
	struct json_object *list;
	struct names names;
	__u64 now = now_ns();

	if (fd < 0)
		return fd;
	if (names_of(a->state, &names))
		return control_error_set(err, CONTROL_E_INTERNAL, "out of memory");
	list = json_object_new_array();
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &v) == 0)
			json_object_array_add(list, auth_json(&next, &v, &names, now));
		key = next;
		prev = &key;
	}
	free(names.v);
	json_object_object_add(result, "auth", list);
	json_object_object_add(result, "trust_domain",
			       peerauth_trust_domain(a)
				       ? json_object_new_string(peerauth_trust_domain(a))
				       : NULL);
	return 0;
}

COMMAND(cmd_auth_flush)
{
	unsigned int removed = 0;
	int r = peerauth_flush(ctx, &removed);

	if (r)
		return control_error_set(err, CONTROL_E_INTERNAL, "map 'fg_auth': %s", strerror(-r));
	json_object_object_add(result, "removed", json_object_new_int64(removed));
	return 0;
}

/* --- bundle.* -------------------------------------------------------------------------------- */

static int take_td(struct json_object *args, const char **td, struct control_error *err)
{
	char why[SPIFFE_WHY_MAX];
	int r = control_arg_string(args, "trust_domain", true, td, err);

	if (r)
		return r;
	if (spiffe_td_valid(*td, why, sizeof(why)))
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT, "trust_domain '%s': %s",
					 *td, why);
	return 0;
}

COMMAND(cmd_bundle_set)
{
	const char *td, *doc;
	int r;

	r = take_td(args, &td, err);
	if (!r)
		r = control_arg_string(args, "document", true, &doc, err);
	if (r)
		return r;
	return peerauth_bundle_set(ctx, td, doc, strlen(doc), result, err);
}

COMMAND(cmd_bundle_del)
{
	const char *td;
	int r = take_td(args, &td, err);

	return r ? r : peerauth_bundle_del(ctx, td, result, err);
}

COMMAND(cmd_bundle_list)
{
	return peerauth_bundle_list(ctx, result);
}

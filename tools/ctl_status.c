// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl status: what an instance has pinned, read from bpffs alone
 * (no agent needed): programs, cgroup links, maps and their fill, the
 * active policy, TC filters and the per-CPU counters summed by reason.
 * When the agent answers its control socket, what it adds (policy version,
 * registrations, quarantine) is merged in; when it does not, enforcement
 * goes on from the pins, so that is reported, not failed. Collected into
 * one JSON tree, printed as JSON (-j) or as text.
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include "cleanup.h"
#include "control.h"
#include "ctl.h"
#include "ctl_client.h"
#include "ctl_util.h"
#include "fedguard/abi.h"
#include "log.h"
#include "pin.h"
#include "policy_map.h"
#include "reason.h"
#include "tc.h"

/* How long status waits for the agent: the pins are shown either way. */
#define STATUS_AGENT_TIMEOUT_MS 5000

static void add_u64(json_object *o, const char *key, __u64 v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static void add_str(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

/* Opens dir/name; -errno logged with the pin's path. */
static int open_pin(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open pin '%s'", path);
	return fd;
}

static int prog_cb(const char *dir, const char *name, void *arg)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	_cleanup_close_ int fd = -1;
	json_object *o;
	char tag[2 * BPF_TAG_SIZE + 1];
	int i;

	fd = open_pin(dir, name);
	if (fd < 0)
		return fd;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return log_error_errno(-errno, "program '%s': cannot read its info", name);
	for (i = 0; i < BPF_TAG_SIZE; i++)
		snprintf(tag + 2 * i, 3, "%02x", info.tag[i]);
	o = json_object_new_object();
	add_str(o, "name", name);
	add_u64(o, "id", info.id);
	add_str(o, "type", libbpf_bpf_prog_type_str(info.type));
	add_str(o, "tag", tag);
	json_object_array_add(arg, o);
	return 0;
}

static int link_cb(const char *dir, const char *name, void *arg)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);
	_cleanup_close_ int fd = -1;
	json_object *o;

	fd = open_pin(dir, name);
	if (fd < 0)
		return fd;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return log_error_errno(-errno, "link '%s': cannot read its info", name);
	o = json_object_new_object();
	add_str(o, "name", name);
	add_u64(o, "id", info.id);
	add_u64(o, "prog_id", info.prog_id);
	add_str(o, "type", libbpf_bpf_link_type_str(info.type));
	if (info.type == BPF_LINK_TYPE_CGROUP) {
		/* cgroup id 0: the link was detached (its cgroup is gone). */
		add_u64(o, "cgroup_id", info.cgroup.cgroup_id);
		add_str(o, "attach_type", libbpf_bpf_attach_type_str(info.cgroup.attach_type));
	}
	json_object_array_add(arg, o);
	return 0;
}

static bool map_is_hashed(enum bpf_map_type type)
{
	switch (type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
	case BPF_MAP_TYPE_LPM_TRIE:
	case BPF_MAP_TYPE_HASH_OF_MAPS:
		return true;
	default:
		return false;
	}
}

/*
 * Entries of a hash-like map, by walking its keys. A key deleted during the
 * walk restarts it from the first key, so the count is capped at the size.
 */
static int map_count_keys(int fd, const struct bpf_map_info *info, __u64 *count)
{
	_cleanup_free_ char *keys = NULL;
	void *prev = NULL, *next;
	__u64 n = 0;

	keys = malloc(2 * (size_t)info->key_size);
	if (!keys)
		return -ENOMEM;
	next = keys;
	while (n < info->max_entries && bpf_map_get_next_key(fd, prev, next) == 0) {
		n++;
		prev = next;
		next = next == keys ? keys + info->key_size : keys;
	}
	if (errno != ENOENT && n < info->max_entries)
		return -errno;
	*count = n;
	return 0;
}

static int map_cb(const char *dir, const char *name, void *arg)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	_cleanup_close_ int fd = -1;
	__u64 entries;
	json_object *o;
	int err;

	fd = open_pin(dir, name);
	if (fd < 0)
		return fd;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return log_error_errno(-errno, "map '%s': cannot read its info", name);
	o = json_object_new_object();
	json_object_array_add(arg, o);
	add_str(o, "name", name);
	add_u64(o, "id", info.id);
	add_str(o, "type", libbpf_bpf_map_type_str(info.type));
	add_u64(o, "max_entries", info.max_entries);
	if (!map_is_hashed(info.type))
		return 0;
	err = map_count_keys(fd, &info, &entries);
	if (err)
		return log_error_errno(err, "map '%s': cannot walk its keys", name);
	add_u64(o, "entries", entries);
	return 0;
}

/* A pin directory into an array; a missing directory is an empty array. */
static int collect_dir(const char *pin_dir, const char *sub, json_object *root, const char *key,
		       int (*cb)(const char *, const char *, void *))
{
	json_object *arr = json_object_new_array();
	char dir[PATH_MAX];
	int err;

	json_object_object_add(root, key, arr);
	snprintf(dir, sizeof(dir), "%s%s%s", pin_dir, sub ? "/" : "", sub ? sub : "");
	if (access(dir, R_OK | X_OK) < 0) {
		if (errno == ENOENT)
			return 0;
		return log_error_errno(-errno, "cannot read '%s'", dir);
	}
	/* The callbacks log their own failures. */
	err = pin_for_each(dir, cb, arr);
	return err < 0 ? err : 0;
}

static int policy_describe(int map_fd, json_object *o, __u32 *id)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), gen;
	__u64 entries;
	int err;

	if (bpf_obj_get_info_by_fd(map_fd, &info, &len) < 0)
		return log_error_errno(-errno, "map '%s': cannot read its info", POLICY_MAP_NAME);
	err = map_count_keys(map_fd, &info, &entries);
	if (err)
		return log_error_errno(err, "map '%s': cannot walk its keys", POLICY_MAP_NAME);
	add_u64(o, "map_id", info.id);
	add_u64(o, "max_entries", info.max_entries);
	if (policy_map_generation(map_fd, &gen) == 0) {
		add_u64(o, "generation", gen);
		entries--; /* the generation entry is no rule */
	} else {
		json_object_object_add(o, "generation", NULL);
	}
	add_u64(o, "rules", entries);
	*id = info.id;
	return 0;
}

/* The map in slot 0 (what the datapath uses), and whether the pin names it. */
static int collect_policy(const struct ctl *ctl, json_object *root)
{
	_cleanup_close_ int slot = -1, active = -1, pinned = -1;
	json_object *o = json_object_new_object();
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), id = 0;
	int err;

	json_object_object_add(root, "policy", o);
	slot = open_pin(ctl->pin_dir, POLICY_SLOT_MAP_NAME);
	if (slot < 0)
		return slot;
	active = policy_map_active(slot);
	json_object_object_add(o, "installed", json_object_new_boolean(active >= 0));
	if (active == -ENOENT)
		return 0;
	if (active < 0)
		return active;
	err = policy_describe(active, o, &id);
	if (err)
		return err;
	pinned = open_pin(ctl->pin_dir, POLICY_MAP_NAME);
	if (pinned >= 0 && bpf_obj_get_info_by_fd(pinned, &info, &len) < 0)
		info.id = 0;
	json_object_object_add(o, "pin_current", json_object_new_boolean(info.id == id));
	return 0;
}

static void tc_collect_iface(const char *ifname, int ifindex, __u32 handle, json_object *arr)
{
	enum tc_dir dir;
	__u32 prog_id;
	json_object *o;

	for (dir = TC_DIR_INGRESS; dir <= TC_DIR_EGRESS; dir++) {
		if (tc_query(ifindex, dir, handle, &prog_id) < 0)
			continue;
		o = json_object_new_object();
		add_str(o, "interface", ifname);
		add_str(o, "direction", tc_dir_name(dir));
		add_u64(o, "prog_id", prog_id);
		json_object_array_add(arr, o);
	}
}

/* Our filters (by handle and priority) on the interfaces of this namespace. */
static int collect_tc(const struct ctl *ctl, json_object *root)
{
	json_object *arr = json_object_new_array();
	__u32 handle = tc_handle(ctl->instance);
	struct if_nameindex *ifs, *i;

	json_object_object_add(root, "tc", arr);
	ifs = if_nameindex();
	if (!ifs)
		return log_error_errno(-errno, "cannot list the network interfaces");
	for (i = ifs; i->if_index; i++)
		tc_collect_iface(i->if_name, (int)i->if_index, handle, arr);
	if_freenameindex(ifs);
	return 0;
}

static void counter_add(json_object *obj, __u32 reason, const struct fg_counter *sum)
{
	const char *name = reason_name(reason);
	json_object *o = json_object_new_object();
	char unknown[32];

	if (!name) {
		/* Counted by a newer datapath than this fedguardctl knows. */
		snprintf(unknown, sizeof(unknown), "reason_%u", reason);
		name = unknown;
	}
	add_u64(o, "packets", sum->packets);
	add_u64(o, "bytes", sum->bytes);
	json_object_object_add(obj, name, o);
}

/* fg_counters is per-CPU: one struct fg_counter per possible CPU, 8-byte aligned. */
static int collect_counters(const struct ctl *ctl, json_object *root)
{
	json_object *obj = json_object_new_object();
	struct bpf_map_info info = {};
	_cleanup_free_ struct fg_counter *v = NULL;
	_cleanup_close_ int fd = -1;
	__u32 len = sizeof(info), key;
	int ncpus, cpu;

	json_object_object_add(root, "counters", obj);
	fd = open_pin(ctl->pin_dir, "fg_counters");
	if (fd < 0)
		return fd;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return log_error_errno(-errno, "map 'fg_counters': cannot read its info");
	if (info.value_size != sizeof(struct fg_counter))
		return log_error_errno(-EINVAL, "map 'fg_counters': value size %u, expected %zu",
				       info.value_size, sizeof(struct fg_counter));
	ncpus = libbpf_num_possible_cpus();
	if (ncpus < 0)
		return log_error_errno(ncpus, "cannot count the possible CPUs");
	v = calloc((size_t)ncpus, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (key = 0; key < info.max_entries; key++) {
		struct fg_counter sum = {};

		if (bpf_map_lookup_elem(fd, &key, v) < 0)
			return log_error_errno(-errno, "map 'fg_counters': cannot read entry %u",
					       key);
		for (cpu = 0; cpu < ncpus; cpu++) {
			sum.packets += v[cpu].packets;
			sum.bytes += v[cpu].bytes;
		}
		/* the map has room for reasons to come: show those only once counted */
		if (key >= FG_REASON_MAX && !sum.packets)
			continue;
		counter_add(obj, key, &sum);
	}
	return 0;
}

/*
 * Asks the agent for its status: the error message of a refusal, or why it
 * could not be reached, into why. 0 with *result, or -errno.
 */
static int agent_status(const struct ctl *ctl, json_object **result, char *why, size_t len)
{
	_cleanup_json_ json_object *reply = NULL;
	json_object *e, *res;
	int r;

	r = ctl_call(ctl, "status", NULL, STATUS_AGENT_TIMEOUT_MS, &reply, why, len);
	if (r)
		return r;
	if (!json_object_get_boolean(ctl_jget(reply, "ok"))) {
		e = ctl_jget(reply, "error");
		snprintf(why, len, "fedguardd at %s: %s", ctl->socket_path,
			 json_object_get_string(ctl_jget(e, "message")));
		return control_code_errno(json_object_get_string(ctl_jget(e, "code")));
	}
	res = ctl_jget(reply, "result");
	*result = json_object_is_type(res, json_type_object) ? json_object_get(res)
							     : json_object_new_object();
	return 0;
}

/*
 * Merges the agent's status into root: its counts at the top, its policy
 * version into "policy", the rest under "agent" with "reachable". An agent
 * that does not answer is no error: the pins keep enforcing.
 */
static void collect_agent(const struct ctl *ctl, json_object *root)
{
	_cleanup_json_ json_object *res = NULL;
	json_object *agent = json_object_new_object();
	char why[512];

	json_object_object_add(root, "agent", agent);
	add_str(agent, "socket", ctl->socket_path);
	if (agent_status(ctl, &res, why, sizeof(why))) {
		json_object_object_add(agent, "reachable", json_object_new_boolean(false));
		add_str(agent, "error", why);
		return;
	}
	json_object_object_add(agent, "reachable", json_object_new_boolean(true));
	json_object_object_foreach (res, key, val) {
		if (!strcmp(key, "workloads") || !strcmp(key, "endpoints") ||
		    !strcmp(key, "quarantined"))
			json_object_object_add(root, key, json_object_get(val));
		else if (!strcmp(key, "policy"))
			json_object_object_add(ctl_jget(root, "policy"), "version",
					       json_object_get(ctl_jget(val, "version")));
		else if (!json_object_object_get_ex(root, key, NULL))
			json_object_object_add(agent, key, json_object_get(val));
	}
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v = ctl_jget(o, key);

	return v ? json_object_get_string(v) : "-";
}

static unsigned long long ju64(json_object *o, const char *key)
{
	return json_object_get_uint64(ctl_jget(o, key));
}

static void print_prog(json_object *p)
{
	printf("  %-16s id %-6llu %s\n", jstr(p, "name"), ju64(p, "id"), jstr(p, "type"));
}

static void print_link(json_object *l)
{
	printf("  %-16s id %-6llu prog %-6llu ", jstr(l, "name"), ju64(l, "id"),
	       ju64(l, "prog_id"));
	if (!ctl_jget(l, "cgroup_id"))
		printf("%s\n", jstr(l, "type"));
	else if (ju64(l, "cgroup_id"))
		printf("cgroup %-6llu %s\n", ju64(l, "cgroup_id"), jstr(l, "attach_type"));
	else
		printf("detached (its cgroup is gone)\n");
}

static void print_map(json_object *m)
{
	char fill[64];

	if (strcmp(jstr(m, "type"), "ringbuf") == 0)
		snprintf(fill, sizeof(fill), "%llu bytes", ju64(m, "max_entries"));
	else if (ctl_jget(m, "entries"))
		snprintf(fill, sizeof(fill), "%llu/%llu entries", ju64(m, "entries"),
			 ju64(m, "max_entries"));
	else
		snprintf(fill, sizeof(fill), "%llu max entries", ju64(m, "max_entries"));
	printf("  %-16s id %-6llu %-18s %s\n", jstr(m, "name"), ju64(m, "id"), jstr(m, "type"),
	       fill);
}

static void print_tc(json_object *t)
{
	printf("  %-16s %-8s prog %llu\n", jstr(t, "interface"), jstr(t, "direction"),
	       ju64(t, "prog_id"));
}

static void print_section(const char *title, json_object *arr, void (*fn)(json_object *))
{
	size_t i, n = json_object_array_length(arr);

	printf("%s:\n", title);
	if (!n)
		printf("  (none)\n");
	for (i = 0; i < n; i++)
		fn(json_object_array_get_idx(arr, i));
}

static void print_policy(json_object *p)
{
	char version[64] = "";

	if (!json_object_get_boolean(ctl_jget(p, "installed"))) {
		printf("policy: none installed: the datapath denies everything\n");
		return;
	}
	/* The version is known to the agent only. */
	if (ctl_jget(p, "version"))
		snprintf(version, sizeof(version), "version %s, ", jstr(p, "version"));
	printf("policy: %sgeneration %s, %llu rules (map id %llu, at most %llu entries)%s\n",
	       version, jstr(p, "generation"), ju64(p, "rules"), ju64(p, "map_id"),
	       ju64(p, "max_entries"),
	       json_object_get_boolean(ctl_jget(p, "pin_current")) ? "" : ", pin outdated");
}

/* The mesh store as the agent sees it; nothing for a standalone agent. */
static void print_store(json_object *s)
{
	if (!s)
		return;
	if (json_object_get_boolean(ctl_jget(s, "reachable")))
		printf("mesh store: %s, reachable, %s at revision %llu, %llu writes pending, node "
		       "'%s'\n", jstr(s, "urls"),
		       json_object_get_boolean(ctl_jget(s, "synced")) ? "in sync" : "not read yet",
		       ju64(s, "revision"), ju64(s, "pending_writes"), jstr(s, "node"));
	else
		printf("mesh store: %s, UNREACHABLE since %s (%s): enforcing the last known "
		       "state, %llu writes pending\n", jstr(s, "urls"), jstr(s, "since"),
		       jstr(s, "last_error"), ju64(s, "pending_writes"));
}

/* The encrypted transport; nothing when the agent runs none. */
static void print_tunnel(json_object *t)
{
	if (!t)
		return;
	printf("tunnel: port %llu, encryption in %s (kTLS %s), %llu flows now; %llu out and %llu "
	       "in since start, %llu refused, %llu cut\n",
	       ju64(t, "port"), jstr(t, "encryption"),
	       json_object_get_boolean(ctl_jget(t, "ktls")) ? "available, unused" : "not in this kernel",
	       ju64(t, "active"), ju64(t, "flows_out"), ju64(t, "flows_in"),
	       ju64(t, "refused_out") + ju64(t, "refused_in"), ju64(t, "cut"));
}

static void print_agent(json_object *root)
{
	json_object *a = ctl_jget(root, "agent");

	if (!json_object_get_boolean(ctl_jget(a, "reachable"))) {
		printf("agent: not reachable, enforcement goes on from the pins (%s)\n",
		       jstr(a, "error"));
		return;
	}
	printf("agent: %s, %llu workloads, %llu endpoints, %llu quarantined\n", jstr(a, "socket"),
	       ju64(root, "workloads"), ju64(root, "endpoints"), ju64(root, "quarantined"));
	print_store(ctl_jget(a, "store"));
	print_tunnel(ctl_jget(a, "tunnel"));
}

static void print_counters(json_object *c)
{
	printf("counters:%29s %14s\n", "packets", "bytes");
	json_object_object_foreach (c, name, v) {
		printf("  %-24s %11llu %14llu\n", name, ju64(v, "packets"), ju64(v, "bytes"));
	}
}

static void print_text(const struct ctl *ctl, json_object *root)
{
	printf("instance '%s' (%s)\n", ctl->instance, ctl->pin_dir);
	print_agent(root);
	print_policy(ctl_jget(root, "policy"));
	print_section("programs", ctl_jget(root, "programs"), print_prog);
	print_section("links", ctl_jget(root, "links"), print_link);
	print_section("tc filters", ctl_jget(root, "tc"), print_tc);
	print_section("maps", ctl_jget(root, "maps"), print_map);
	print_counters(ctl_jget(root, "counters"));
}

static int status_collect(const struct ctl *ctl, json_object *root)
{
	int err;

	err = collect_dir(ctl->pin_dir, PIN_PROGS_DIR, root, "programs", prog_cb);
	if (err)
		return err;
	err = collect_dir(ctl->pin_dir, PIN_LINKS_DIR, root, "links", link_cb);
	if (err)
		return err;
	err = collect_dir(ctl->pin_dir, NULL, root, "maps", map_cb);
	if (err)
		return err;
	err = collect_policy(ctl, root);
	if (err)
		return err;
	err = collect_tc(ctl, root);
	if (err)
		return err;
	return collect_counters(ctl, root);
}

int ctl_status(struct ctl *ctl, int argc, char **argv)
{
	_cleanup_json_ json_object *root = NULL;
	int err;

	if (argc > 0) {
		log_error("status: unexpected argument '%s'", argv[0]);
		return CTL_USAGE;
	}
	if (access(ctl->pin_dir, F_OK) < 0) {
		if (errno == ENOENT)
			return log_error_errno(-errno, "instance '%s' is not installed: %s",
					       ctl->instance, ctl->pin_dir);
		return log_error_errno(-errno, "cannot read '%s'", ctl->pin_dir);
	}
	root = json_object_new_object();
	add_str(root, "instance", ctl->instance);
	add_str(root, "pin_dir", ctl->pin_dir);
	err = status_collect(ctl, root);
	if (err)
		return err;
	collect_agent(ctl, root);
	if (ctl->json)
		ctl_print_json(root);
	else
		print_text(ctl, root);
	return 0;
}

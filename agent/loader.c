// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* The skeleton's .bss types are ABI structs: abi.h goes first. */
#include "fedguard/abi.h"

#include "fedguard.skel.h"

#include "cleanup.h"
#include "loader.h"
#include "log.h"
#include "pin.h"
#include "policy_map.h"
#include "tc.h"

#define KERNEL_BTF_PATH "/sys/kernel/btf/vmlinux"

int loader_check_host(void)
{
	if (geteuid() != 0) {
		log_error("fedguardd must run as root: effective uid is %u",
			  (unsigned int)geteuid());
		return -EPERM;
	}
	if (access(KERNEL_BTF_PATH, R_OK) < 0)
		return log_error_errno(-errno,
				       "kernel BTF '%s' is not available (CONFIG_DEBUG_INFO_BTF)",
				       KERNEL_BTF_PATH);
	return 0;
}

static int loader_new(const char *instance, struct loader **out)
{
	struct loader *l;
	int err;

	err = sys_instance_check(instance);
	if (err)
		return err;
	l = calloc(1, sizeof(*l));
	if (!l)
		return log_error_errno(-ENOMEM, "cannot allocate the loader");
	l->lock_fd = -1;
	strcpy(l->instance, instance);
	err = pin_path(l->pin_dir, sizeof(l->pin_dir), instance, NULL, NULL);
	if (err) {
		free(l);
		return log_error_errno(err, "instance '%s': pin directory", instance);
	}
	*out = l;
	return 0;
}

void loader_free(struct loader *l)
{
	fedguard__destroy(l->skel);
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	free(l);
}

static int ifaces_resolve(const struct loader_opts *opts, int **out)
{
	_cleanup_free_ int *idx = NULL;
	unsigned int i;

	idx = calloc(opts->n_ifaces + 1, sizeof(*idx));
	if (!idx)
		return log_error_errno(-ENOMEM, "cannot allocate the interface list");
	for (i = 0; i < opts->n_ifaces; i++) {
		idx[i] = (int)if_nametoindex(opts->ifaces[i]);
		if (!idx[i])
			return log_error_errno(-errno, "interface '%s' does not exist",
					       opts->ifaces[i]);
	}
	*out = take_ptr(idx);
	return 0;
}

/* Describes the first property in which a pinned map differs from the object's. */
static bool map_differs(const struct bpf_map *map, const struct bpf_map_info *info, char *buf,
			size_t size)
{
	const struct {
		const char *what;
		unsigned long long pinned, wanted;
	} props[] = {
		{"type", info->type, bpf_map__type(map)},
		{"key size", info->key_size, bpf_map__key_size(map)},
		{"value size", info->value_size, bpf_map__value_size(map)},
		{"max entries", info->max_entries, bpf_map__max_entries(map)},
		{"flags", info->map_flags, bpf_map__map_flags(map)},
		{"map_extra", info->map_extra, bpf_map__map_extra(map)},
	};
	size_t i;

	for (i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		if (props[i].pinned != props[i].wanted) {
			snprintf(buf, size, "%s %llu, the BPF object wants %llu", props[i].what,
				 props[i].pinned, props[i].wanted);
			return true;
		}
	}
	return false;
}

/*
 * libbpf reuses a pinned map only when it matches the object's definition
 * and then fails with a generic message; check first, to name map and cause.
 */
static int map_check_pinned(const struct bpf_map *map, const char *path, const char *instance)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	_cleanup_close_ int fd = -1;
	char why[128];

	fd = bpf_obj_get(path);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0)
		return log_error_errno(-errno, "map '%s': cannot open its pin '%s'",
				       bpf_map__name(map), path);
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return log_error_errno(-errno, "map '%s': cannot read the info of '%s'",
				       bpf_map__name(map), path);
	if (!map_differs(map, &info, why, sizeof(why)))
		return 0;
	log_error("map '%s': the pinned map '%s' cannot be reused: %s", bpf_map__name(map), path,
		  why);
	log_error("run 'fedguardd --instance %s --uninstall' first: it drops the instance's state",
		  instance);
	return -EINVAL;
}

/* Every map but libbpf's .rodata/.data/.bss lives at <pin dir>/<map name>. */
static int maps_set_pin_paths(struct loader *l)
{
	char path[PATH_MAX];
	struct bpf_map *map;
	int err;

	bpf_object__for_each_map (map, l->skel->obj) {
		if (bpf_map__is_internal(map))
			continue;
		err = pin_path(path, sizeof(path), l->instance, NULL, bpf_map__name(map));
		if (err)
			return log_error_errno(err, "map '%s': pin path", bpf_map__name(map));
		err = map_check_pinned(map, path, l->instance);
		if (err)
			return err;
		err = bpf_map__set_pin_path(map, path);
		if (err)
			return log_error_errno(err, "map '%s': cannot set its pin path",
					       bpf_map__name(map));
	}
	return 0;
}

/* fedguardd creates fg_policy maps itself; the kernel takes them only if they match. */
static int check_policy_inner_map(struct bpf_map *slot)
{
	const struct bpf_map *inner = bpf_map__inner_map(slot);

	if (inner && bpf_map__type(inner) == BPF_MAP_TYPE_HASH &&
	    bpf_map__key_size(inner) == sizeof(struct fg_policy_key) &&
	    bpf_map__value_size(inner) == sizeof(struct fg_policy_value) &&
	    bpf_map__map_flags(inner) == POLICY_MAP_FLAGS)
		return 0;
	log_error("map '%s': its inner map differs from the '%s' maps fedguardd creates",
		  POLICY_SLOT_MAP_NAME, POLICY_MAP_NAME);
	log_error("expected: HASH, fg_policy_key -> fg_policy_value, flags BPF_F_NO_PREALLOC");
	return -EINVAL;
}

static int object_open(struct loader *l, const struct loader_opts *opts)
{
	__u32 hz = 0;
	int err;

	err = sys_kernel_hz(&hz);
	if (err)
		return err;
	log_debug("kernel HZ: %u", hz);
	l->skel = fedguard__open();
	if (!l->skel)
		return log_error_errno(-errno, "BPF object 'fedguard': cannot open it");
	/* Settings fixed for the life of the programs: rodata, before load. */
	l->skel->rodata->cfg_cgroup_root_level = l->cgroup.level;
	l->skel->rodata->cfg_auth_syn_rto_ms = opts->auth_syn_rto_ms;
	l->skel->rodata->cfg_hz = hz;
	l->skel->rodata->cfg_events_allow = opts->events_allow;
	l->skel->rodata->cfg_events_rate = opts->events_rate;
	l->skel->rodata->cfg_events_burst = opts->events_burst;
	l->skel->rodata->cfg_tun_port = opts->tun_port;
	l->skel->rodata->cfg_tun_addr4 = opts->tun_addr4;
	memcpy((void *)l->skel->rodata->cfg_tun_addr6, opts->tun_addr6, 16);
	err = check_policy_inner_map(l->skel->maps.fg_policy_slot);
	if (err)
		return err;
	return maps_set_pin_paths(l);
}

static int object_load(struct loader *l)
{
	int err;

	err = fedguard__load(l->skel);
	if (!err)
		return 0;
	if (l->adopted)
		log_error(
			"pinned state of instance '%s' from another version? run --uninstall first",
			l->instance);
	return log_error_errno(err, "BPF object 'fedguard': cannot load it");
}

static int policy_install_empty(struct loader *l, int slot_fd, __u32 max_entries)
{
	struct policy_map_spec spec;
	_cleanup_close_ int fd = -1;
	__u32 gen;
	int err;

	err = policy_spec_from_btf(bpf_object__btf(l->skel->obj), max_entries, &spec);
	if (err)
		return err;
	fd = policy_map_create(&spec);
	policy_spec_release(&spec);
	if (fd < 0)
		return fd;
	err = policy_map_swap(slot_fd, fd, policy_map_shape(NULL, 0), l->pin_dir, &gen);
	if (err)
		return err;
	log_info(
		"installed an empty policy (generation %u): everything is denied until rules arrive",
		gen);
	return 0;
}

/*
 * An empty slot means the datapath denies everything; install an empty
 * rule map anyway so that the generation starts at 1 and the map is pinned
 * for operators. A policy left by a previous agent stays; only its pin is
 * refreshed, in case that agent died between installing and pinning it.
 */
static int policy_ensure(struct loader *l, __u32 max_entries)
{
	int slot_fd = bpf_map__fd(l->skel->maps.fg_policy_slot);
	_cleanup_close_ int fd = -1;

	fd = policy_map_active(slot_fd);
	if (fd == -ENOENT)
		return policy_install_empty(l, slot_fd, max_entries);
	if (fd < 0)
		return fd;
	return policy_map_pin_active(slot_fd, l->pin_dir);
}

/* The link of one cgroup program: reopened from its pin, or attached anew. */
struct link_plan {
	struct bpf_program *prog;
	struct bpf_link *link;
	bool from_pin;	     /* update in place rather than pin */
	char path[PATH_MAX]; /* <pin dir>/links/<prog name> */
};

struct link_plans {
	struct link_plan *v;
	unsigned int n;
};

static bool prog_is_cgroup(const struct bpf_program *prog)
{
	switch (bpf_program__type(prog)) {
	case BPF_PROG_TYPE_CGROUP_SKB:
	case BPF_PROG_TYPE_CGROUP_SOCK:
	case BPF_PROG_TYPE_CGROUP_SOCK_ADDR:
	case BPF_PROG_TYPE_SOCK_OPS:
	case BPF_PROG_TYPE_CGROUP_SOCKOPT:
	case BPF_PROG_TYPE_CGROUP_SYSCTL:
	case BPF_PROG_TYPE_CGROUP_DEVICE:
		return bpf_program__fd(prog) >= 0;
	default:
		return false;
	}
}

/*
 * Closing a link that is not pinned yet detaches it: freeing the plans
 * before the pin step rolls back every new attachment.
 */
static void link_plans_free(struct link_plans *p)
{
	unsigned int i;

	for (i = 0; i < p->n; i++)
		bpf_link__destroy(p->v[i].link);
	free(p->v);
}

static int link_plans_init(struct loader *l, struct link_plans *p)
{
	struct bpf_program *prog;
	unsigned int n = 0;
	int err;

	bpf_object__for_each_program (prog, l->skel->obj)
		n += prog_is_cgroup(prog);
	p->v = calloc(n ? n : 1, sizeof(*p->v));
	if (!p->v)
		return log_error_errno(-ENOMEM, "cannot allocate the link plan");
	bpf_object__for_each_program (prog, l->skel->obj) {
		struct link_plan *lp = &p->v[p->n];

		if (!prog_is_cgroup(prog))
			continue;
		lp->prog = prog;
		err = pin_path(lp->path, sizeof(lp->path), l->instance, PIN_LINKS_DIR,
			       bpf_program__name(prog));
		if (err)
			return log_error_errno(err, "link '%s': pin path", bpf_program__name(prog));
		p->n++;
	}
	return 0;
}

/* 0: ours, adopt it; 1: defunct (its cgroup is gone); -errno: refuse to adopt. */
static int link_check(const struct loader *l, const struct link_plan *lp)
{
	const char *name = bpf_program__name(lp->prog);
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(bpf_link__fd(lp->link), &info, &len) < 0)
		return log_error_errno(-errno, "link '%s': cannot read its info", name);
	if (info.type != BPF_LINK_TYPE_CGROUP) {
		log_error(
			"link '%s' of instance '%s' is a %s link, not a cgroup link: run --uninstall first",
			name, l->instance, libbpf_bpf_link_type_str(info.type));
		return -EINVAL;
	}
	if (info.cgroup.cgroup_id == 0)
		return 1;
	if (info.cgroup.cgroup_id != l->cgroup.id) {
		log_error(
			"instance '%s' is attached to cgroup id %llu, not '%s': run --uninstall first",
			l->instance, (unsigned long long)info.cgroup.cgroup_id, l->cgroup.path);
		return -EEXIST;
	}
	if (info.cgroup.attach_type != bpf_program__expected_attach_type(lp->prog)) {
		log_error("link '%s' is attached as %s, the program is %s: run --uninstall first",
			  name, libbpf_bpf_attach_type_str(info.cgroup.attach_type),
			  libbpf_bpf_attach_type_str(bpf_program__expected_attach_type(lp->prog)));
		return -EINVAL;
	}
	return 0;
}

/* Opens and checks every pinned link before anything changes. */
static int links_open_pinned(const struct loader *l, struct link_plans *p)
{
	unsigned int i;
	int r;

	for (i = 0; i < p->n; i++) {
		struct link_plan *lp = &p->v[i];
		const char *name = bpf_program__name(lp->prog);

		if (!pin_exists(lp->path))
			continue;
		lp->link = bpf_link__open(lp->path);
		if (!lp->link)
			return log_error_errno(-errno, "link '%s': cannot open its pin '%s'", name,
					       lp->path);
		r = link_check(l, lp);
		if (r < 0)
			return r;
		if (r == 1) {
			log_warn("link '%s' was detached from its cgroup: attaching anew", name);
			bpf_link__destroy(lp->link);
			lp->link = NULL;
			continue;
		}
		lp->from_pin = true;
	}
	return 0;
}

static int links_attach_new(const struct loader *l, struct link_plans *p)
{
	_cleanup_close_ int cg_fd = -1;
	unsigned int i;

	cg_fd = open(l->cgroup.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg_fd < 0)
		return log_error_errno(-errno, "cgroup '%s': cannot open it", l->cgroup.path);
	for (i = 0; i < p->n; i++) {
		struct link_plan *lp = &p->v[i];

		if (lp->link)
			continue;
		lp->link = bpf_program__attach_cgroup(lp->prog, cg_fd);
		if (!lp->link)
			return log_error_errno(-errno,
					       "program '%s': cannot attach it to cgroup '%s'",
					       bpf_program__name(lp->prog), l->cgroup.path);
	}
	return 0;
}

/* BPF_LINK_UPDATE swaps the program of a live link: no moment without one. */
static int links_update(struct link_plans *p)
{
	unsigned int i;
	int err;

	for (i = 0; i < p->n; i++) {
		struct link_plan *lp = &p->v[i];

		if (!lp->from_pin)
			continue;
		err = bpf_link__update_program(lp->link, lp->prog);
		if (err)
			return log_error_errno(err, "link '%s': cannot replace its program",
					       bpf_program__name(lp->prog));
		log_debug("link '%s': program replaced in place", bpf_program__name(lp->prog));
	}
	return 0;
}

static int links_pin_new(struct link_plans *p)
{
	unsigned int i;
	int err;

	for (i = 0; i < p->n; i++) {
		if (p->v[i].from_pin)
			continue;
		err = pin_replace(bpf_link__fd(p->v[i].link), p->v[i].path);
		if (err)
			return err;
		log_debug("link '%s': attached and pinned", bpf_program__name(p->v[i].prog));
	}
	return 0;
}

/* Detaches (even if some other process holds it open) and unpins a link. */
static int link_detach_pinned(const char *dir, const char *name)
{
	_cleanup_close_ int fd = -1;
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return log_error_errno(-errno, "link '%s': cannot open its pin '%s'", name, path);
	if (bpf_link_detach(fd) < 0 && errno != ENOLINK)
		return log_error_errno(-errno, "link '%s': cannot detach it", name);
	if (unlink(path) < 0)
		return log_error_errno(-errno, "link '%s': cannot unpin '%s'", name, path);
	return 0;
}

static int link_remove_if_stale(const char *dir, const char *name, void *arg)
{
	const struct link_plans *p = arg;
	unsigned int i;
	int err;

	for (i = 0; i < p->n; i++) {
		if (strcmp(bpf_program__name(p->v[i].prog), name) == 0)
			return 0;
	}
	err = link_detach_pinned(dir, name);
	if (!err)
		log_info(
			"link '%s': detached and unpinned: the BPF object no longer has that program",
			name);
	return err;
}

static int cgroup_links_attach(struct loader *l)
{
	__attribute__((cleanup(link_plans_free))) struct link_plans p = {};
	char dir[PATH_MAX];
	int err;

	err = link_plans_init(l, &p);
	if (err)
		return err;
	err = links_open_pinned(l, &p);
	if (err)
		return err;
	err = links_attach_new(l, &p);
	if (err)
		return err;
	err = links_update(&p);
	if (err)
		return err;
	err = links_pin_new(&p);
	if (err)
		return err;
	pin_path(dir, sizeof(dir), l->instance, PIN_LINKS_DIR, NULL);
	return pin_for_each(dir, link_remove_if_stale, &p);
}

static int prog_remove_if_stale(const char *dir, const char *name, void *arg)
{
	const struct loader *l = arg;
	char path[PATH_MAX];

	if (bpf_object__find_program_by_name(l->skel->obj, name))
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (unlink(path) < 0)
		return log_error_errno(-errno, "program '%s': cannot unpin '%s'", name, path);
	return 0;
}

/* Programs are pinned for operators and tests; links and TC keep them alive anyway. */
static int progs_pin(struct loader *l)
{
	struct bpf_program *prog;
	char path[PATH_MAX];
	int err;

	bpf_object__for_each_program (prog, l->skel->obj) {
		if (bpf_program__fd(prog) < 0)
			continue;
		err = pin_path(path, sizeof(path), l->instance, PIN_PROGS_DIR,
			       bpf_program__name(prog));
		if (err)
			return log_error_errno(err, "program '%s': pin path",
					       bpf_program__name(prog));
		err = pin_replace(bpf_program__fd(prog), path);
		if (err)
			return err;
	}
	pin_path(path, sizeof(path), l->instance, PIN_PROGS_DIR, NULL);
	return pin_for_each(path, prog_remove_if_stale, l);
}

/*
 * Attaches on the requested interfaces, replacing our filters in place, then
 * removes ours from interfaces no longer requested. Failing to clean another
 * interface does not stop the start: it is logged.
 */
static int tc_setup(struct loader *l, const int *ifindex, unsigned int n)
{
	const int fds[2] = {
		[TC_DIR_INGRESS] = bpf_program__fd(l->skel->progs.fg_tc_ingress),
		[TC_DIR_EGRESS] = bpf_program__fd(l->skel->progs.fg_tc_egress),
	};
	__u32 handle = tc_handle(l->instance);
	unsigned int i;
	int err;

	for (i = 0; i < n; i++) {
		err = tc_attach(ifindex[i], handle, fds);
		if (err)
			return err;
	}
	tc_detach_all(handle, ifindex, n);
	return 0;
}

int loader_start(const struct loader_opts *opts, struct loader **out)
{
	_cleanup_loader_ struct loader *l = NULL;
	_cleanup_free_ int *ifindex = NULL;
	int err;

	err = loader_new(opts->instance, &l);
	if (err)
		return err;

	err = sys_cgroup_resolve(opts->cgroup, &l->cgroup);
	if (err)
		return err;
	log_debug("cgroup '%s': id %llu, level %u", l->cgroup.path,
		  (unsigned long long)l->cgroup.id, l->cgroup.level);
	err = ifaces_resolve(opts, &ifindex);
	if (err)
		return err;

	err = sys_mount_bpffs();
	if (err)
		return err;
	err = sys_lock_instance(l->instance, &l->lock_fd);
	if (err)
		return err;
	l->adopted = pin_exists(l->pin_dir);
	err = pin_dirs_create(l->instance);
	if (err)
		return err;

	err = object_open(l, opts);
	if (err)
		return err;
	err = object_load(l);
	if (err)
		return err;

	/* Policy before hooks: a hook attached on a fresh install finds a (deny-all) map. */
	err = policy_ensure(l, opts->policy_max_entries);
	if (err)
		return err;
	err = cgroup_links_attach(l);
	if (err)
		return err;
	err = progs_pin(l);
	if (err)
		return err;
	err = tc_setup(l, ifindex, opts->n_ifaces);
	if (err)
		return err;

	if (l->adopted)
		log_info("adopted pinned state of instance '%s'", l->instance);
	else
		log_info("installed instance '%s'", l->instance);
	*out = take_ptr(l);
	return 0;
}

struct uninstall_ctx {
	int links; /* links detached */
	int err;   /* the first failure; the others are logged too */
};

/* Keeps going past a failure: an uninstall removes all that it can. */
static int link_detach_cb(const char *dir, const char *name, void *arg)
{
	struct uninstall_ctx *ctx = arg;
	int err;

	err = link_detach_pinned(dir, name);
	if (err && !ctx->err)
		ctx->err = err;
	if (err)
		return 0;
	log_info("link '%s': detached", name);
	ctx->links++;
	return 0;
}

/* Detaches links, TC filters, then unpins; says whether anything was there. */
static int uninstall_pinned(const char *instance, bool *found)
{
	struct uninstall_ctx ctx = {};
	char dir[PATH_MAX];
	int err, filters;

	pin_path(dir, sizeof(dir), instance, PIN_LINKS_DIR, NULL);
	err = pin_for_each(dir, link_detach_cb, &ctx);
	if (err && err != -ENOENT)
		return log_error_errno(err, "instance '%s': cannot list '%s'", instance, dir);
	filters = tc_detach_all(tc_handle(instance), NULL, 0);
	if (filters < 0 && !ctx.err)
		ctx.err = filters;
	pin_path(dir, sizeof(dir), instance, NULL, NULL);
	err = pin_remove_tree(dir);
	if (err && err != -ENOENT) {
		log_error_errno(err, "instance '%s': cannot remove '%s'", instance, dir);
		ctx.err = ctx.err ? ctx.err : err;
	}
	/* The last instance gone leaves no empty FG_PIN_ROOT behind. */
	rmdir(FG_PIN_ROOT);
	if (ctx.err)
		return ctx.err;
	*found = err != -ENOENT || ctx.links || filters;
	return 0;
}

int loader_uninstall(const char *instance)
{
	_cleanup_close_ int lock_fd = -1;
	bool found;
	int err;

	err = sys_instance_check(instance);
	if (err)
		return err;
	err = sys_lock_instance(instance, &lock_fd);
	if (err == -EBUSY)
		log_error("stop the agent of instance '%s' before --uninstall", instance);
	if (err)
		return err;
	err = uninstall_pinned(instance, &found);
	if (err)
		return err;
	err = sys_unlink_lock(instance);
	if (err)
		return err;
	if (found)
		log_info("uninstalled instance '%s'", instance);
	else
		log_info("instance '%s' is not installed: nothing to do", instance);
	return 0;
}

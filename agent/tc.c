// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/classifier.h>

#include "cleanup.h"
#include "log.h"
#include "tc.h"

/* Only programs with this name prefix are ours to detach. */
#define TC_PROG_PREFIX "fg_tc_"

__u32 tc_handle(const char *instance)
{
	__u32 h = 2166136261u;

	for (; *instance; instance++) {
		h ^= (unsigned char)*instance;
		h *= 16777619u;
	}
	return h | 1;
}

const char *tc_dir_name(enum tc_dir dir)
{
	return dir == TC_DIR_INGRESS ? "ingress" : "egress";
}

static enum bpf_tc_attach_point tc_point(enum tc_dir dir)
{
	return dir == TC_DIR_INGRESS ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

static const char *ifname(int ifindex, char buf[IF_NAMESIZE])
{
	if (!if_indextoname((unsigned int)ifindex, buf))
		snprintf(buf, IF_NAMESIZE, "#%d", ifindex);
	return buf;
}

static int attach_one(int ifindex, enum tc_dir dir, __u32 handle, int prog_fd)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = tc_point(dir));
	LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .handle = handle,
		    .priority = TC_PRIORITY, .flags = BPF_TC_F_REPLACE);
	char name[IF_NAMESIZE];
	int err;

	err = bpf_tc_attach(&hook, &opts);
	if (err)
		return log_error_errno(err, "interface '%s': cannot attach the TC %s filter",
				       ifname(ifindex, name), tc_dir_name(dir));
	return 0;
}

int tc_attach(int ifindex, __u32 handle, const int prog_fd[2])
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	char name[IF_NAMESIZE];
	int err;

	/* EEXIST (the usual case after the first start) is not worth a warning. */
	log_libbpf_demote(true);
	err = bpf_tc_hook_create(&hook);
	log_libbpf_demote(false);
	if (err && err != -EEXIST)
		return log_error_errno(err, "interface '%s': cannot create the clsact qdisc",
				       ifname(ifindex, name));
	err = attach_one(ifindex, TC_DIR_INGRESS, handle, prog_fd[TC_DIR_INGRESS]);
	if (err)
		return err;
	return attach_one(ifindex, TC_DIR_EGRESS, handle, prog_fd[TC_DIR_EGRESS]);
}

int tc_query(int ifindex, enum tc_dir dir, __u32 handle, __u32 *prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = tc_point(dir));
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = TC_PRIORITY);
	int err;

	log_libbpf_demote(true);
	err = bpf_tc_query(&hook, &opts);
	log_libbpf_demote(false);
	/* EINVAL: the interface has no clsact qdisc to hold filters. */
	if (err == -EINVAL)
		return -ENOENT;
	if (err)
		return err;
	*prog_id = opts.prog_id;
	return 0;
}

/* Number of filters (of any owner) under one clsact parent, through libnl. */
static int clsact_count(int ifindex, __u32 parent)
{
	struct nl_sock *sk = nl_socket_alloc();
	struct nl_cache *cache = NULL;
	int err, n;

	if (!sk)
		return -ENOMEM;
	err = nl_connect(sk, NETLINK_ROUTE);
	if (!err)
		err = rtnl_cls_alloc_cache(sk, ifindex, parent, &cache);
	if (err) {
		log_debug("ifindex %d: listing tc filters: %s", ifindex, nl_geterror(err));
		nl_socket_free(sk);
		return -EIO;
	}
	n = nl_cache_nitems(cache);
	nl_cache_free(cache);
	nl_socket_free(sk);
	return n;
}

int tc_clsact_empty(int ifindex, bool *empty)
{
	int in, eg;

	in = clsact_count(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS));
	if (in < 0)
		return in;
	eg = clsact_count(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS));
	if (eg < 0)
		return eg;
	*empty = in == 0 && eg == 0;
	return 0;
}

static bool prog_is_ours(__u32 prog_id)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	_cleanup_close_ int fd = -1;

	fd = bpf_prog_get_fd_by_id(prog_id);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return false;
	return strncmp(info.name, TC_PROG_PREFIX, strlen(TC_PROG_PREFIX)) == 0;
}

/*
 * There is no telling who created a clsact qdisc; remove it only when no
 * filter of anybody is left on it, and leave it when that is unknown.
 */
static void clsact_remove_if_empty(int ifindex, const char *name)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	bool empty;
	int err;

	err = tc_clsact_empty(ifindex, &empty);
	if (err) {
		log_warn_errno(
			err,
			"interface '%s': left its clsact qdisc in place: cannot list its filters",
			name);
		return;
	}
	if (!empty) {
		log_info("interface '%s': left its clsact qdisc in place: other filters use it",
			 name);
		return;
	}
	err = bpf_tc_hook_destroy(&hook);
	if (err)
		log_warn_errno(err, "interface '%s': cannot remove its empty clsact qdisc", name);
	else
		log_info("interface '%s': removed its clsact qdisc, which had no filter left",
			 name);
}

static int detach_one(int ifindex, const char *name, enum tc_dir dir, __u32 handle)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = tc_point(dir));
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = TC_PRIORITY);
	__u32 prog_id;
	int err;

	err = tc_query(ifindex, dir, handle, &prog_id);
	if (err == -ENOENT)
		return 0;
	if (err)
		return log_warn_errno(err, "interface '%s': cannot query the TC %s filters", name,
				      tc_dir_name(dir));
	if (!prog_is_ours(prog_id)) {
		log_warn(
			"interface '%s': TC %s filter 0x%x runs program %u, not fedguard's: left alone",
			name, tc_dir_name(dir), handle, prog_id);
		return 0;
	}
	err = bpf_tc_detach(&hook, &opts);
	if (err)
		return log_error_errno(err, "interface '%s': cannot detach the TC %s filter", name,
				       tc_dir_name(dir));
	log_info("interface '%s': detached the TC %s filter (program id %u)", name,
		 tc_dir_name(dir), prog_id);
	return 1;
}

static bool in_list(int v, const int *list, unsigned int n)
{
	while (n--) {
		if (list[n] == v)
			return true;
	}
	return false;
}

int tc_detach_all(__u32 handle, const int *keep, unsigned int n_keep)
{
	struct if_nameindex *ifs, *i;
	int removed = 0, err = 0, r, dir;

	ifs = if_nameindex();
	if (!ifs)
		return log_error_errno(-errno, "cannot list the network interfaces");
	for (i = ifs; i->if_index; i++) {
		int n = 0, idx = (int)i->if_index;

		if (in_list(idx, keep, n_keep))
			continue;
		for (dir = TC_DIR_INGRESS; dir <= TC_DIR_EGRESS; dir++) {
			r = detach_one(idx, i->if_name, (enum tc_dir)dir, handle);
			if (r < 0 && !err)
				err = r;
			n += r > 0;
		}
		if (n)
			clsact_remove_if_empty(idx, i->if_name);
		removed += n;
	}
	if_freenameindex(ifs);
	return err ? err : removed;
}

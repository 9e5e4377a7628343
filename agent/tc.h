/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fedguard's TC filters on a node's interfaces: direct-action cls_bpf on the
 * clsact qdisc, priority TC_PRIORITY, and a handle derived from the instance
 * name so that instances sharing an interface own distinct filters and a
 * restarted agent finds (and replaces in place) its own.
 */
#ifndef FEDGUARD_TC_H
#define FEDGUARD_TC_H

#include <stdbool.h>

#include <linux/types.h>

#define TC_PRIORITY 1

enum tc_dir {
	TC_DIR_INGRESS = 0,
	TC_DIR_EGRESS = 1,
};

/* The filter handle of an instance: FNV-1a of the name, never 0. */
__u32 tc_handle(const char *instance);

const char *tc_dir_name(enum tc_dir dir);

/*
 * Creates clsact on ifindex when missing and attaches prog_fd[dir] in both
 * directions, replacing our previous filters in place. Logs the cause.
 */
int tc_attach(int ifindex, __u32 handle, const int prog_fd[2]);

/* The program id of our filter; -ENOENT when there is none. */
int tc_query(int ifindex, enum tc_dir dir, __u32 handle, __u32 *prog_id);

/* Whether the clsact qdisc of ifindex has no filter left in either direction. */
int tc_clsact_empty(int ifindex, bool *empty);

/*
 * Removes our filters from every interface of the network namespace except
 * those in keep[], then the clsact qdisc of an interface when we can tell
 * that it is left empty. Returns how many filters were removed.
 */
int tc_detach_all(__u32 handle, const int *keep, unsigned int n_keep);

#endif /* FEDGUARD_TC_H */

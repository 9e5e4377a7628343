/* SPDX-License-Identifier: Apache-2.0 */
/* The cgroup v2 identity of the test process, as BPF helpers report it. */
#ifndef FG_TEST_CGROUP_H
#define FG_TEST_CGROUP_H

#include <limits.h>
#include <linux/types.h>

/*
 * The cgroup2 mount point from /proc/self/mountinfo (/sys/fs/cgroup on
 * most hosts, /sys/fs/cgroup/unified on hybrid ones). 0 or -errno.
 */
int fg_test_cgroup2_mount(char path[PATH_MAX]);

/*
 * The id of the calling process's cgroup v2 ("0::PATH" in /proc/self/cgroup
 * below the cgroup2 mount): the value bpf_get_current_cgroup_id() and, for
 * sockets the process creates, bpf_skb_cgroup_id() return. 0 or -errno.
 */
int fg_test_cgroup_self_id(__u64 *id);

#endif /* FG_TEST_CGROUP_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host facts the agent depends on: where cgroup v2 is mounted, which
 * cgroup it manages, bpffs at /sys/fs/bpf, and the per-instance lock.
 * Functions return 0 or a negative errno; those that face user input log
 * the cause at error level themselves (documented per function).
 */
#ifndef FEDGUARD_SYS_H
#define FEDGUARD_SYS_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#include <linux/types.h>

#define SYS_BPFFS_PATH	      "/sys/fs/bpf"
#define SYS_RUN_DIR	      "/run/fedguard"
#define SYS_INSTANCE_NAME_MAX 64

/* A cgroup2 mount: its mount point and the hierarchy directory shown there. */
struct sys_mount {
	char target[PATH_MAX];
	char root[PATH_MAX];
};

/* A cgroup of the v2 hierarchy. */
struct sys_cgroup {
	char path[PATH_MAX]; /* absolute, symlinks resolved */
	__u32 level;	     /* path components below the hierarchy root */
	__u64 id;	     /* what bpf_get_current_cgroup_id() returns */
};

/* Finds the first cgroup2 line of a mountinfo stream; -ENOENT if none. */
int sys_find_cgroup2(FILE *mountinfo, struct sys_mount *out);

/* sys_find_cgroup2() on /proc/self/mountinfo. Logs the cause on failure. */
int sys_cgroup2_mount(struct sys_mount *out);

/*
 * Resolves --cgroup: an absolute path that must lie under the cgroup2 mount,
 * or a path relative to that mount. Logs the cause on failure.
 */
int sys_cgroup_resolve(const char *arg, struct sys_cgroup *out);

/* The cgroup id of a cgroup directory (its kernfs node id). */
int sys_cgroup_id(const char *path, __u64 *id);

/* Mounts bpffs at /sys/fs/bpf unless one is there. Logs the cause on failure. */
int sys_mount_bpffs(void);

/*
 * The kernel's tick rate (CONFIG_HZ): from /proc/config.gz or
 * /boot/config-<release>, else measured from the jiffies counter in
 * /proc/timer_list and rounded to the nearest standard rate.
 */
int sys_kernel_hz(__u32 *hz);

/*
 * [A-Za-z0-9_-], 1 to 64 characters. No '.': the name is a bpffs directory
 * and bpffs refuses dots in names (EPERM).
 */
bool sys_instance_name_valid(const char *name);

/* sys_instance_name_valid(), logging why a name is refused: 0 or -EINVAL. */
int sys_instance_check(const char *name);

/*
 * Takes /run/fedguard/<instance>.lock (flock, exclusive, non-blocking) and
 * writes our pid into it. -EBUSY, logged with the holder's pid, when another
 * process holds it. The lock lasts as long as *fd stays open.
 */
int sys_lock_instance(const char *instance, int *fd);

/* Removes the lock file of an instance (while still holding it). */
int sys_unlink_lock(const char *instance);

/*
 * Tells the service manager about the process, as sd_notify(3) does,
 * without libsystemd: one datagram of @state (e.g. "READY=1") to the
 * AF_UNIX socket in $NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace). 0 when sent or when there is no $NOTIFY_SOCKET; -EINVAL for
 * a value that is neither; else the -errno of sending.
 */
int sys_notify(const char *state);

#endif /* FEDGUARD_SYS_H */

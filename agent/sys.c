// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>
#include <zlib.h>

#include "cleanup.h"
#include "log.h"
#include "sys.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void mountinfo_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/*
 * One mountinfo line: "id parent maj:min root target options [optional...]
 * - fstype source superoptions". The optional fields vary in number, so the
 * filesystem type is found after the " - " separator.
 */
static int mountinfo_parse_line(char *line, struct sys_mount *out)
{
	char fstype[32];
	char *sep;

	sep = strstr(line, " - ");
	if (!sep)
		return -EINVAL;
	if (sscanf(sep + 3, "%31s", fstype) != 1 || strcmp(fstype, "cgroup2") != 0)
		return -ENOENT;
	*sep = '\0';
	if (sscanf(line, "%*s %*s %*s %4095s %4095s", out->root, out->target) != 2)
		return -EINVAL;
	mountinfo_unescape(out->root);
	mountinfo_unescape(out->target);
	return 0;
}

int sys_find_cgroup2(FILE *mountinfo, struct sys_mount *out)
{
	_cleanup_free_ char *line = NULL;
	_cleanup_free_ struct sys_mount *m = NULL;
	size_t cap = 0;

	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	while (getline(&line, &cap, mountinfo) > 0) {
		if (mountinfo_parse_line(line, m) == 0) {
			*out = *m;
			return 0;
		}
	}
	return -ENOENT;
}

int sys_cgroup2_mount(struct sys_mount *out)
{
	_cleanup_fclose_ FILE *f = NULL;
	int err;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return log_error_errno(-errno, "cannot read '/proc/self/mountinfo'");
	err = sys_find_cgroup2(f, out);
	if (err == -ENOENT)
		log_error("no cgroup v2 (cgroup2) filesystem is mounted: see /proc/self/mountinfo");
	return err;
}

/* Number of non-empty components of a path: "/" is 0, "/a/b" is 2. */
static __u32 path_depth(const char *path)
{
	__u32 n = 0;

	for (; *path; path++) {
		if (*path != '/' && (path[1] == '/' || path[1] == '\0'))
			n++;
	}
	return n;
}

/* The part of path below dir ("" for dir itself), or NULL if not below it. */
static const char *path_below(const char *dir, const char *path)
{
	size_t len = strlen(dir);

	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (len == 1 && dir[0] == '/')
		return path;
	if (strncmp(path, dir, len) != 0 || (path[len] != '/' && path[len] != '\0'))
		return NULL;
	return path + len;
}

int sys_cgroup_id(const char *path, __u64 *id)
{
	union {
		struct file_handle fh;
		char buf[sizeof(struct file_handle) + sizeof(__u64)];
	} h = {.fh.handle_bytes = sizeof(__u64)};
	int mount_id;

	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0)
		return -errno;
	memcpy(id, h.fh.f_handle, sizeof(*id));
	return 0;
}

static int cgroup_check_dir(const char *arg, const char *path)
{
	struct statfs sfs;
	struct stat st;

	if (stat(path, &st) < 0)
		return log_error_errno(-errno, "cgroup '%s'", arg);
	if (!S_ISDIR(st.st_mode)) {
		log_error("cgroup '%s': '%s' is not a directory", arg, path);
		return -ENOTDIR;
	}
	if (statfs(path, &sfs) < 0)
		return log_error_errno(-errno, "cgroup '%s'", arg);
	if (sfs.f_type != CGROUP2_SUPER_MAGIC) {
		log_error("cgroup '%s': '%s' is not on a cgroup v2 filesystem", arg, path);
		return -EINVAL;
	}
	return 0;
}

/*
 * The level of the cgroup @rel below the mount @mnt, counted from the
 * hierarchy's root: what bpf_get_current_ancestor_cgroup_id() takes.
 * mountinfo gives the mount's root, but inside a cgroup namespace (a
 * Kubernetes pod's) relative to the namespace's root ("/../../.."), which
 * says nothing of its depth. The hierarchy's root is told apart by its
 * files instead: it is the only cgroup without cgroup.events. So a mount
 * of the root needs no mountinfo; a mount of a subtree from outside the
 * namespace cannot be placed and is refused.
 */
static int cgroup_level(const struct sys_mount *mnt, const char *rel, const char *arg,
			__u32 *level)
{
	char events[PATH_MAX + 16];

	snprintf(events, sizeof(events), "%s/cgroup.events", mnt->target);
	if (access(events, F_OK) < 0 && errno == ENOENT) {
		*level = path_depth(rel);
		return 0;
	}
	if (!strcmp(mnt->root, "/..") || !strncmp(mnt->root, "/../", 4)) {
		log_error("cgroup '%s': the cgroup2 mount '%s' shows a subtree from outside this "
			  "cgroup namespace ('%s'): mount the hierarchy's root there instead",
			  arg, mnt->target, mnt->root);
		return -EINVAL;
	}
	*level = path_depth(mnt->root) + path_depth(rel);
	return 0;
}

int sys_cgroup_resolve(const char *arg, struct sys_cgroup *out)
{
	_cleanup_free_ struct sys_mount *mnt = NULL;
	char joined[PATH_MAX], real[PATH_MAX];
	const char *rel;
	int err, n;

	mnt = malloc(sizeof(*mnt));
	if (!mnt)
		return -ENOMEM;
	err = sys_cgroup2_mount(mnt);
	if (err)
		return err;
	if (arg[0] == '/')
		n = snprintf(joined, sizeof(joined), "%s", arg);
	else
		n = snprintf(joined, sizeof(joined), "%s/%s", mnt->target, arg);
	if (n < 0 || (size_t)n >= sizeof(joined))
		return log_error_errno(-ENAMETOOLONG, "cgroup '%s'", arg);
	if (!realpath(joined, real)) {
		if (strcmp(joined, arg) == 0)
			return log_error_errno(-errno, "cgroup '%s'", arg);
		return log_error_errno(-errno, "cgroup '%s' ('%s')", arg, joined);
	}
	rel = path_below(mnt->target, real);
	if (!rel) {
		log_error("cgroup '%s' is not under the cgroup2 mount '%s'", arg, mnt->target);
		return -EINVAL;
	}
	err = cgroup_check_dir(arg, real);
	if (err)
		return err;
	err = sys_cgroup_id(real, &out->id);
	if (err)
		return log_error_errno(err, "cgroup '%s': cannot read its cgroup id", arg);
	err = cgroup_level(mnt, rel, arg, &out->level);
	if (err)
		return err;
	memcpy(out->path, real, sizeof(real));
	return 0;
}

static int run_dir_open(void)
{
	int fd;

	if (mkdir(SYS_RUN_DIR, 0755) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create '%s'", SYS_RUN_DIR);
	fd = open(SYS_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", SYS_RUN_DIR);
	return fd;
}

static bool is_bpffs(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC;
}

/*
 * Agents of several instances may start at once: the check and the mount run
 * under a lock on /run/fedguard so that two of them never stack two bpffs
 * mounts, the second hiding the pins made in the first.
 */
int sys_mount_bpffs(void)
{
	_cleanup_close_ int dir_fd = -1;

	if (is_bpffs(SYS_BPFFS_PATH))
		return 0;
	dir_fd = run_dir_open();
	if (dir_fd < 0)
		return dir_fd;
	if (flock(dir_fd, LOCK_EX) < 0)
		return log_error_errno(-errno, "cannot lock '%s'", SYS_RUN_DIR);
	if (is_bpffs(SYS_BPFFS_PATH))
		return 0;
	if (mkdir(SYS_BPFFS_PATH, 0700) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create '%s'", SYS_BPFFS_PATH);
	if (mount("bpf", SYS_BPFFS_PATH, "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") < 0)
		return log_error_errno(-errno, "cannot mount bpffs at '%s'", SYS_BPFFS_PATH);
	log_info("mounted bpffs at '%s'", SYS_BPFFS_PATH);
	return 0;
}

bool sys_instance_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > SYS_INSTANCE_NAME_MAX)
		return false;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") ==
	       len;
}

int sys_instance_check(const char *name)
{
	if (sys_instance_name_valid(name))
		return 0;
	log_error("instance name '%s' is invalid: use 1 to %d of [A-Za-z0-9_-] (bpffs refuses '.')",
		  name, SYS_INSTANCE_NAME_MAX);
	return -EINVAL;
}

static void lock_path(const char *instance, char *buf, size_t size)
{
	/* Instance names are validated: at most 64 characters, no '/'. */
	snprintf(buf, size, "%s/%s.lock", SYS_RUN_DIR, instance);
}

static int lock_report_holder(const char *instance, int fd, const char *path)
{
	char buf[32] = "";
	ssize_t n;
	long pid;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	pid = n > 0 ? strtol(buf, NULL, 10) : 0;
	if (pid > 0)
		log_error("instance '%s' is already running (pid %ld): '%s' is locked", instance,
			  pid, path);
	else
		log_error("instance '%s' is already running: '%s' is locked", instance, path);
	return -EBUSY;
}

/* True when the file we locked is still the one the path names. */
static bool lock_still_linked(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static int lock_write_pid(int fd, const char *path)
{
	char buf[32];
	int len;

	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		return log_error_errno(-errno, "cannot write our pid to '%s'", path);
	return 0;
}

/*
 * An uninstall may unlink the lock file between our open() and flock(): the
 * lock would then guard an orphaned inode, so retry on a fresh file.
 */
int sys_lock_instance(const char *instance, int *fd_out)
{
	char path[PATH_MAX];
	int attempt, err;

	err = run_dir_open();
	if (err < 0)
		return err;
	close(err);
	lock_path(instance, path, sizeof(path));
	for (attempt = 0; attempt < 8; attempt++) {
		_cleanup_close_ int fd = -1;

		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0)
			return log_error_errno(-errno, "cannot open lock '%s'", path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno == EWOULDBLOCK)
				return lock_report_holder(instance, fd, path);
			return log_error_errno(-errno, "cannot lock '%s'", path);
		}
		if (!lock_still_linked(fd, path))
			continue;
		err = lock_write_pid(fd, path);
		if (err)
			return err;
		*fd_out = take_fd(&fd);
		return 0;
	}
	return log_error_errno(-EAGAIN, "cannot lock '%s': it keeps being replaced", path);
}

int sys_unlink_lock(const char *instance)
{
	char path[PATH_MAX];

	lock_path(instance, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		return log_error_errno(-errno, "cannot remove lock '%s'", path);
	return 0;
}

/* CONFIG_HZ=N from a kernel config file; gzread() reads plain files as well. */
static int config_hz(const char *path, __u32 *hz)
{
	unsigned long v = 0;
	char line[256];
	gzFile f;

	f = gzopen(path, "rb");
	if (!f)
		return -ENOENT;
	while (gzgets(f, line, sizeof(line))) {
		if (strncmp(line, "CONFIG_HZ=", 10) == 0) {
			v = strtoul(line + 10, NULL, 10);
			break;
		}
	}
	gzclose(f);
	if (!v || v > 10000)
		return -ENOENT;
	*hz = (__u32)v;
	return 0;
}

/* The "jiffies: N" line of /proc/timer_list. */
static int read_jiffies(unsigned long long *j)
{
	_cleanup_fclose_ FILE *f = NULL;
	char line[256];

	f = fopen("/proc/timer_list", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "jiffies: %llu", j) == 1)
			return 0;
	}
	return -ENOENT;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

/* Counts the ticks of 100 ms and picks the closest of the rates Linux offers. */
static int measure_hz(__u32 *hz)
{
	static const __u32 rates[] = {100, 250, 300, 1000};
	struct timespec pause = {.tv_nsec = 100 * 1000 * 1000};
	unsigned long long j0, j1;
	double measured, best = 1e9;
	__u32 closest = 0;
	__u64 t0, t1;
	size_t i;
	int err;

	t0 = now_ns();
	err = read_jiffies(&j0);
	if (err)
		return err;
	nanosleep(&pause, NULL);
	t1 = now_ns();
	err = read_jiffies(&j1);
	if (err)
		return err;
	measured = (double)(j1 - j0) * 1e9 / (double)(t1 - t0);
	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		double d = measured > rates[i] ? measured - rates[i] : rates[i] - measured;

		if (d < best) {
			best = d;
			closest = rates[i];
		}
	}
	*hz = closest;
	return 0;
}

int sys_kernel_hz(__u32 *hz)
{
	struct utsname uts;
	char path[PATH_MAX];
	int err;

	if (config_hz("/proc/config.gz", hz) == 0)
		return 0;
	if (uname(&uts) == 0) {
		snprintf(path, sizeof(path), "/boot/config-%s", uts.release);
		if (config_hz(path, hz) == 0)
			return 0;
	}
	err = measure_hz(hz);
	if (err)
		return log_error_errno(err,
				       "cannot tell the kernel's HZ from its config or jiffies");
	log_debug("kernel HZ measured as %u", *hz);
	return 0;
}

int sys_notify(const char *state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = getenv("NOTIFY_SOCKET");
	_cleanup_close_ int fd = -1;
	size_t len;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len < 2 || len > sizeof(sa.sun_path))
		return log_debug_errno(-EINVAL, "NOTIFY_SOCKET '%s'", path);
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return log_debug_errno(-errno, "NOTIFY_SOCKET '%s': socket", path);
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		return log_debug_errno(-errno, "NOTIFY_SOCKET '%s': cannot send '%s'", path, state);
	return 0;
}

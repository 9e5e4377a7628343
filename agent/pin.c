// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "cleanup.h"
#include "fedguard/abi.h"
#include "log.h"
#include "pin.h"

int pin_path(char *buf, size_t size, const char *instance, const char *sub, const char *name)
{
	int n;

	n = snprintf(buf, size, "%s/%s%s%s%s%s", FG_PIN_ROOT, instance, sub ? "/" : "",
		     sub ? sub : "", name ? "/" : "", name ? name : "");
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

static int mkdir_exist_ok(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create directory '%s'", path);
	return 0;
}

int pin_dirs_create(const char *instance)
{
	static const char *const subs[] = {NULL, PIN_PROGS_DIR, PIN_LINKS_DIR};
	char path[PATH_MAX];
	size_t i;
	int err;

	err = mkdir_exist_ok(FG_PIN_ROOT);
	if (err)
		return err;
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		err = pin_path(path, sizeof(path), instance, subs[i], NULL);
		if (err)
			return err;
		err = mkdir_exist_ok(path);
		if (err)
			return err;
	}
	return 0;
}

bool pin_is_temporary(const char *name)
{
	return strstr(name, PIN_TMP_MARK) != NULL;
}

bool pin_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

int pin_replace(int fd, const char *path)
{
	char tmp[PATH_MAX];
	const char *base;
	int n;

	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	n = snprintf(tmp, sizeof(tmp), "%.*s%s%s%d", (int)(base - path), path, base, PIN_TMP_MARK,
		     (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return log_error_errno(-ENAMETOOLONG, "cannot pin '%s'", path);
	if (bpf_obj_pin(fd, tmp) < 0)
		return log_error_errno(-errno, "cannot pin '%s'", tmp);
	if (rename(tmp, path) < 0) {
		int err = -errno;

		unlink(tmp);
		return log_error_errno(err, "cannot rename pin '%s' to '%s'", tmp, path);
	}
	return 0;
}

static bool entry_is_dir(int dir_fd, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	return fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static bool is_dot_or_dotdot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* Empties and removes parent_fd/name; keeps going past errors, returns the first. */
static int remove_tree_at(int parent_fd, const char *name)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd, err = 0, r;

	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (is_dot_or_dotdot(de->d_name))
			continue;
		if (entry_is_dir(dirfd(d), de))
			r = remove_tree_at(dirfd(d), de->d_name);
		else
			r = unlinkat(dirfd(d), de->d_name, 0) < 0 ? -errno : 0;
		if (r && !err)
			err = r;
	}
	r = unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
	return err ? err : r;
}

int pin_remove_tree(const char *dir)
{
	return remove_tree_at(AT_FDCWD, dir);
}

static void free_namelist(struct dirent **list, int n)
{
	while (n > 0)
		free(list[--n]);
	free(list);
}

/* In name order, so that listings read the same from run to run. */
int pin_for_each(const char *dir, int (*fn)(const char *dir, const char *name, void *arg),
		 void *arg)
{
	_cleanup_close_ int dir_fd = -1;
	struct dirent **list;
	int i, n, err = 0;

	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	n = scandir(dir, &list, NULL, alphasort);
	if (n < 0)
		return -errno;
	for (i = 0; i < n && err >= 0; i++) {
		if (pin_is_temporary(list[i]->d_name) || entry_is_dir(dir_fd, list[i]))
			continue;
		err = fn(dir, list[i]->d_name, arg);
	}
	free_namelist(list, n);
	return err < 0 ? err : 0;
}

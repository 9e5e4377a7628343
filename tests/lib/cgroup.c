// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static void freep(void *p)
{
	free(*(void **)p);
}

/* mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPER */
static bool mountinfo_is_cgroup2(const char *line, char *mnt, size_t n)
{
	const char *sep = strstr(line, " - ");
	char point[PATH_MAX];

	if (!sep || strncmp(sep, " - cgroup2 ", 11) != 0)
		return false;
	if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1)
		return false;
	/* mount points with spaces are octal-escaped (\040); cgroup2 has none */
	if (strlen(point) >= n)
		return false;
	strcpy(mnt, point);
	return true;
}

int fg_test_cgroup2_mount(char path[PATH_MAX])
{
	__attribute__((cleanup(fclosep))) FILE *f = fopen("/proc/self/mountinfo", "re");
	__attribute__((cleanup(freep))) char *line = NULL;
	size_t cap = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		if (mountinfo_is_cgroup2(line, path, PATH_MAX))
			return 0;
	}
	return -ENOENT;
}

/* The "0::PATH" line of /proc/self/cgroup: this process's cgroup v2. */
static int cgroup2_self_path(char path[PATH_MAX])
{
	__attribute__((cleanup(fclosep))) FILE *f = fopen("/proc/self/cgroup", "re");
	__attribute__((cleanup(freep))) char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (!f)
		return -errno;
	while ((len = getline(&line, &cap, f)) > 0) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		if (line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (strlen(line + 3) >= PATH_MAX)
			return -ENAMETOOLONG;
		strcpy(path, line + 3);
		return 0;
	}
	return -ENOENT;
}

int fg_test_cgroup_self_id(__u64 *id)
{
	struct {
		struct file_handle fh;
		__u64 cgid;
	} h = { .fh.handle_bytes = sizeof(__u64) };
	char mnt[PATH_MAX], rel[PATH_MAX], full[2 * PATH_MAX];
	int mount_id, r;

	r = fg_test_cgroup2_mount(mnt);
	if (r < 0)
		return r;
	r = cgroup2_self_path(rel);
	if (r < 0)
		return r;
	snprintf(full, sizeof(full), "%s%s", mnt, rel);
	/* kernfs hands out the cgroup id as the file handle of the directory */
	if (name_to_handle_at(AT_FDCWD, full, &h.fh, &mount_id, 0) < 0)
		return -errno;
	if (h.fh.handle_bytes != sizeof(__u64))
		return -EPROTO;
	*id = h.cgid;
	return 0;
}

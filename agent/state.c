// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fedguard/abi.h>

#include "cleanup.h"
#include "log.h"
#include "spiffe.h"

static const char *const sections[] = {
	"identities", "trust_domains", "workloads", "endpoints", "quarantine",
};

struct json_object *state_new(void)
{
	struct json_object *s = json_object_new_object();

	if (!s)
		return NULL;
	json_object_object_add(s, "format", json_object_new_int(STATE_FORMAT));
	json_object_object_add(s, "next_identity", json_object_new_int64(FG_ID_DYNAMIC_MIN));
	json_object_object_add(s, "next_td", json_object_new_int64(1));
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		json_object_object_add(s, sections[i], json_object_new_object());
	return s;
}

struct json_object *state_section(struct json_object *state, const char *name)
{
	struct json_object *sec = NULL;

	if (!json_object_object_get_ex(state, name, &sec) ||
	    !json_object_is_type(sec, json_type_object)) {
		sec = json_object_new_object();
		json_object_object_add(state, name, sec);
	}
	return sec;
}

void state_put(struct json_object *state, const char *section, const char *key,
	       struct json_object *value)
{
	struct json_object *sec = state_section(state, section);

	if (value)
		json_object_object_add(sec, key, value);
	else
		json_object_object_del(sec, key);
}

/* A loaded document must at least have the shape state_new() gives. */
static int state_check(struct json_object *s, const char *path)
{
	struct json_object *v;

	if (!json_object_is_type(s, json_type_object) ||
	    !json_object_object_get_ex(s, "format", &v) || json_object_get_int(v) != STATE_FORMAT) {
		log_error("state file '%s': not a fedguard state of format %d", path, STATE_FORMAT);
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		state_section(s, sections[i]);
	return 0;
}

int state_load(const char *dir, struct json_object **out)
{
	char path[PATH_MAX];
	struct json_object *s;

	snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
	if (access(path, F_OK) && errno == ENOENT) {
		*out = state_new();
		return *out ? 0 : -ENOMEM;
	}
	s = json_object_from_file(path);
	if (!s) {
		log_error("state file '%s': %s", path, json_util_get_last_err());
		return -EINVAL;
	}
	if (state_check(s, path)) {
		json_object_put(s);
		return -EINVAL;
	}
	*out = s;
	return 0;
}

static int mkdir_p(const char *dir)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

static int write_all(int fd, const char *text)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

int state_save(const char *dir, struct json_object *state)
{
	const char *text = json_object_to_json_string_ext(
		state, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	_cleanup_close_ int fd = -1, dfd = -1;
	int r;

	r = mkdir_p(dir);
	if (r)
		return log_error_errno(r, "state directory '%s'", dir);
	snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return log_error_errno(-errno, "state file '%s'", tmp);
	r = write_all(fd, text);
	if (!r)
		r = write_all(fd, "\n");
	if (!r && fsync(fd))
		r = -errno;
	if (!r && rename(tmp, path))
		r = -errno;
	if (r) {
		unlink(tmp);
		return log_error_errno(r, "state file '%s'", path);
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);	/* the rename itself must survive a crash */
	return 0;
}

struct json_object *state_copy(struct json_object *state)
{
	struct json_object *copy = NULL;

	if (json_object_deep_copy(state, &copy, NULL))
		return NULL;
	return copy;
}

/* Next number from counter @name, never handing out more than @max. */
static int state_next(struct json_object *state, const char *name, __u32 max, __u32 *out)
{
	struct json_object *v;
	__s64 next = 0;

	if (json_object_object_get_ex(state, name, &v))
		next = json_object_get_int64(v);
	if (next <= 0 || next > max)
		return -ENOSPC;
	json_object_object_add(state, name, json_object_new_int64(next + 1));
	*out = (__u32)next;
	return 0;
}

static int state_number(struct json_object *state, const char *section, const char *counter,
			__u32 max, const char *key, __u32 *id)
{
	struct json_object *sec = state_section(state, section), *v;
	__u32 n;
	int r;

	if (json_object_object_get_ex(sec, key, &v)) {
		*id = (__u32)json_object_get_int64(v);
		return 0;
	}
	r = state_next(state, counter, max, &n);
	if (r)
		return r;
	json_object_object_add(sec, key, json_object_new_int64(n));
	*id = n;
	return 0;
}

int state_identity(struct json_object *state, const char *spiffe_id, __u32 *id)
{
	return state_number(state, "identities", "next_identity", FG_ID_DYNAMIC_MAX, spiffe_id, id);
}

__u32 state_identity_find(struct json_object *state, const char *spiffe_id)
{
	struct json_object *v;

	if (!json_object_object_get_ex(state_section(state, "identities"), spiffe_id, &v))
		return 0;
	return (__u32)json_object_get_int64(v);
}

int state_trust_domain(struct json_object *state, const char *td, __u32 *id)
{
	return state_number(state, "trust_domains", "next_td", 0xffffff, td, id);
}

static bool state_referenced(struct json_object *state, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(state_section(state, "workloads"), key, &v) ||
	       json_object_object_get_ex(state_section(state, "endpoints"), key, &v) ||
	       json_object_object_get_ex(state_section(state, "quarantine"), key, &v);
}

/* The trust domain of an ID as a NUL-terminated string in buf. */
static bool td_of(const char *id, char *buf, size_t len)
{
	struct spiffe_id sid;

	if (spiffe_parse(id, &sid, NULL, 0) || sid.td_len >= len)
		return false;
	memcpy(buf, sid.td, sid.td_len);
	buf[sid.td_len] = 0;
	return true;
}

static bool td_referenced(struct json_object *state, const char *td)
{
	char buf[256], own[300];

	snprintf(own, sizeof(own), "spiffe://%s", td);
	if (state_referenced(state, own))
		return true;
	json_object_object_foreach(state_section(state, "identities"), id, v)
	{
		(void)v;
		if (td_of(id, buf, sizeof(buf)) && strcmp(buf, td) == 0)
			return true;
	}
	return false;
}

/* Deletes the members of @sec that @keep says nothing refers to. */
static void collect_section(struct json_object *state, struct json_object *sec,
			    bool (*keep)(struct json_object *state, const char *key))
{
	/* json-c forbids deleting while iterating: find one, delete, start over */
	for (bool again = true; again;) {
		struct json_object_iterator it = json_object_iter_begin(sec);
		struct json_object_iterator end = json_object_iter_end(sec);

		again = false;
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
			const char *k = json_object_iter_peek_name(&it);

			if (!keep(state, k)) {
				json_object_object_del(sec, k);
				again = true;
				break;
			}
		}
	}
}

void state_collect(struct json_object *state)
{
	collect_section(state, state_section(state, "identities"), state_referenced);
	collect_section(state, state_section(state, "trust_domains"), td_referenced);
}

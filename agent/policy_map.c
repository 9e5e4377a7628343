// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "cleanup.h"
#include "fedguard/abi.h"
#include "log.h"
#include "pin.h"
#include "policy_map.h"

static int btf_struct_id(const struct btf *btf, const char *name, __u32 *id)
{
	int r;

	r = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
	if (r < 0)
		return log_error_errno(r, "BTF of the BPF object has no 'struct %s'", name);
	*id = (__u32)r;
	return 0;
}

int policy_spec_from_btf(const struct btf *btf, __u32 max_entries, struct policy_map_spec *spec)
{
	__u32 key_id = 0, value_id = 0;
	int err, fd;

	if (btf__fd(btf) < 0)
		return log_error_errno(-EINVAL,
				       "BTF of the BPF object is not loaded in the kernel");
	err = btf_struct_id(btf, "fg_policy_key", &key_id);
	if (err)
		return err;
	err = btf_struct_id(btf, "fg_policy_value", &value_id);
	if (err)
		return err;
	fd = fcntl(btf__fd(btf), F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return log_error_errno(-errno, "cannot duplicate the BTF fd");
	spec->btf_fd = fd;
	spec->key_type_id = key_id;
	spec->value_type_id = value_id;
	spec->max_entries = max_entries;
	return 0;
}

int policy_spec_from_map(int map_fd, struct policy_map_spec *spec)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd;

	if (bpf_obj_get_info_by_fd(map_fd, &info, &len) < 0)
		return log_error_errno(-errno, "map '%s': cannot read its info", POLICY_MAP_NAME);
	if (!info.btf_id)
		return log_error_errno(-ENOENT, "map '%s' (id %u) carries no BTF", POLICY_MAP_NAME,
				       info.id);
	fd = bpf_btf_get_fd_by_id(info.btf_id);
	if (fd < 0)
		return log_error_errno(-errno, "map '%s': cannot open its BTF (id %u)",
				       POLICY_MAP_NAME, info.btf_id);
	spec->btf_fd = fd;
	spec->key_type_id = info.btf_key_type_id;
	spec->value_type_id = info.btf_value_type_id;
	spec->max_entries = info.max_entries;
	return 0;
}

void policy_spec_release(struct policy_map_spec *spec)
{
	if (spec->btf_fd >= 0)
		close(spec->btf_fd);
	spec->btf_fd = -1;
}

int policy_map_create(const struct policy_map_spec *spec)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .btf_fd = (__u32)spec->btf_fd,
		    .btf_key_type_id = spec->key_type_id, .btf_value_type_id = spec->value_type_id,
		    .map_flags = POLICY_MAP_FLAGS);
	int fd;

	fd = bpf_map_create(BPF_MAP_TYPE_HASH, POLICY_MAP_NAME, sizeof(struct fg_policy_key),
			    sizeof(struct fg_policy_value), spec->max_entries, &opts);
	if (fd < 0)
		return log_error_errno(-errno, "map '%s': cannot create it (%u entries)",
				       POLICY_MAP_NAME, spec->max_entries);
	return fd;
}

int policy_slot_open(const char *pin_dir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pin_dir, POLICY_SLOT_MAP_NAME);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return log_error_errno(-errno, "map '%s': cannot open '%s'", POLICY_SLOT_MAP_NAME,
				       path);
	return fd;
}

/*
 * The slot holds a map id; the map may be replaced (and freed) between the
 * lookup and the open, so look again when the id has gone.
 */
int policy_map_active(int slot_fd)
{
	__u32 zero = 0, id;
	int attempt, fd;

	for (attempt = 0; attempt < 3; attempt++) {
		if (bpf_map_lookup_elem(slot_fd, &zero, &id) < 0) {
			if (errno == ENOENT)
				return -ENOENT;
			return log_error_errno(-errno, "map '%s': cannot read slot 0",
					       POLICY_SLOT_MAP_NAME);
		}
		fd = bpf_map_get_fd_by_id(id);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT)
			break;
	}
	return log_error_errno(-errno, "map '%s': cannot open the map in slot 0",
			       POLICY_SLOT_MAP_NAME);
}

int policy_map_generation(int map_fd, __u32 *generation)
{
	struct fg_policy_key key = {.dir = FG_DIR_META};
	struct fg_policy_value value;

	if (bpf_map_lookup_elem(map_fd, &key, &value) < 0)
		return -errno;
	if (value.action != FG_ACT_META)
		return -EINVAL;
	*generation = value.rule_id;
	return 0;
}

static int write_generation(int map_fd, __u32 generation)
{
	struct fg_policy_key key = {.dir = FG_DIR_META};
	struct fg_policy_value value = {.action = FG_ACT_META, .rule_id = generation};

	if (bpf_map_update_elem(map_fd, &key, &value, BPF_ANY) < 0)
		return log_error_errno(-errno, "map '%s': cannot write generation %u",
				       POLICY_MAP_NAME, generation);
	return 0;
}

/* The next generation: 1 on an empty slot; 0 is skipped when it wraps. */
static int next_generation(int slot_fd, __u32 *next)
{
	_cleanup_close_ int fd = -1;
	__u32 prev = 0;
	int err;

	fd = policy_map_active(slot_fd);
	if (fd < 0 && fd != -ENOENT)
		return fd;
	if (fd >= 0) {
		err = policy_map_generation(fd, &prev);
		if (err)
			return log_error_errno(err,
					       "map '%s': the active map has no generation entry",
					       POLICY_MAP_NAME);
	}
	*next = prev + 1 ? prev + 1 : 1;
	return 0;
}

static int pin_policy(int map_fd, const char *pin_dir)
{
	char path[PATH_MAX];
	int n;

	n = snprintf(path, sizeof(path), "%s/%s", pin_dir, POLICY_MAP_NAME);
	if (n < 0 || (size_t)n >= sizeof(path))
		return log_error_errno(-ENAMETOOLONG, "map '%s': cannot pin it in '%s'",
				       POLICY_MAP_NAME, pin_dir);
	return pin_replace(map_fd, path);
}

int policy_map_swap(int slot_fd, int new_fd, const char *pin_dir, __u32 *generation)
{
	__u32 zero = 0, gen = 0;
	int err;

	err = next_generation(slot_fd, &gen);
	if (err)
		return err;
	err = write_generation(new_fd, gen);
	if (err)
		return err;
	if (bpf_map_update_elem(slot_fd, &zero, &new_fd, BPF_ANY) < 0)
		/* EINVAL: sizes or flags differ from the object's inner map. */
		return log_error_errno(-errno, "map '%s': cannot install '%s' in slot 0",
				       POLICY_SLOT_MAP_NAME, POLICY_MAP_NAME);
	/* Slot first: the pin follows the datapath, and a restart repairs it. */
	err = pin_policy(new_fd, pin_dir);
	if (err)
		return err;
	*generation = gen;
	return 0;
}

int policy_map_pin_active(int slot_fd, const char *pin_dir)
{
	_cleanup_close_ int fd = -1;

	fd = policy_map_active(slot_fd);
	if (fd < 0)
		return fd;
	return pin_policy(fd, pin_dir);
}

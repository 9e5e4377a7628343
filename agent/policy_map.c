// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "cleanup.h"
#include "fedguard/abi.h"
#include "log.h"
#include "pin.h"
#include "policy_compile.h"
#include "policy_map.h"

/*
 * Entries per batched bpf() call: 4096 keys and values are 80 KiB of
 * buffer, and a 100k-entry policy takes 25 calls instead of 100,000.
 */
enum { POLICY_BATCH = 4096 };

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

int policy_map_fill(int map_fd, const struct policy_entry *entries, size_t n)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
	size_t chunk = n < POLICY_BATCH ? n : POLICY_BATCH;
	_cleanup_free_ struct fg_policy_key *keys = NULL;
	_cleanup_free_ struct fg_policy_value *values = NULL;

	if (n == 0)
		return 0;
	keys = malloc(chunk * sizeof(*keys));
	values = malloc(chunk * sizeof(*values));
	if (!keys || !values)
		return -ENOMEM;
	for (size_t done = 0; done < n;) {
		__u32 count = (__u32)(n - done < chunk ? n - done : chunk);

		for (__u32 i = 0; i < count; i++) {
			keys[i] = entries[done + i].key;
			values[i] = entries[done + i].value;
		}
		/* on failure, count says how many of this batch were written */
		if (bpf_map_update_batch(map_fd, keys, values, &count, &opts) < 0)
			return log_error_errno(-errno, "map '%s': cannot write entry %zu of %zu",
					       POLICY_MAP_NAME, done + count + 1, n);
		done += count;
	}
	return 0;
}

/* Makes room for at least @want more entries in both arrays. */
static int dump_reserve(struct fg_policy_key **keys, struct fg_policy_value **values,
			size_t *cap, size_t n, size_t want)
{
	size_t grown = *cap ? *cap : POLICY_BATCH;
	void *k, *v;

	while (grown - n < want)
		grown *= 2;
	if (grown == *cap)
		return 0;
	k = realloc(*keys, grown * sizeof(**keys));
	if (!k)
		return -ENOMEM;
	*keys = k;
	v = realloc(*values, grown * sizeof(**values));
	if (!v)
		return -ENOMEM;
	*values = v;
	*cap = grown;
	return 0;
}

/* Every key and value of @map_fd, in lookup-batch calls. */
static int dump_raw(int map_fd, struct fg_policy_key **keys, struct fg_policy_value **values,
		    size_t *n_out)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	size_t n = 0, cap = 0, want = POLICY_BATCH;
	__u32 token = 0;
	bool first = true;

	for (;;) {
		__u32 count;
		int r;

		r = dump_reserve(keys, values, &cap, n, want);
		if (r)
			return r;
		count = (__u32)(cap - n);
		r = bpf_map_lookup_batch(map_fd, first ? NULL : &token, &token, *keys + n,
					 *values + n, &count, &opts);
		if (r < 0 && errno == ENOSPC) {
			/* one hash bucket holds more entries than there was room for */
			want = (cap - n) * 2;
			continue;
		}
		if (r < 0 && errno != ENOENT)
			return log_error_errno(-errno, "map '%s': cannot read its entries",
					       POLICY_MAP_NAME);
		n += count;
		first = false;
		if (r < 0) /* ENOENT: that was the last batch */
			break;
	}
	*n_out = n;
	return 0;
}

int policy_map_dump(int map_fd, struct policy_entry **out, size_t *n_out)
{
	_cleanup_free_ struct fg_policy_key *keys = NULL;
	_cleanup_free_ struct fg_policy_value *values = NULL;
	struct policy_entry *set;
	size_t n = 0, kept = 0;
	int r;

	r = dump_raw(map_fd, &keys, &values, &n);
	if (r)
		return r;
	set = malloc((n ? n : 1) * sizeof(*set));
	if (!set)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].dir == FG_DIR_META)
			continue;
		set[kept].key = keys[i];
		set[kept].value = values[i];
		kept++;
	}
	*out = set;
	*n_out = kept;
	return 0;
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

__u8 policy_map_shape(const struct policy_entry *entries, size_t n)
{
	__u8 shape = FG_SHAPE_NO_ANY_PEER | FG_SHAPE_NO_ANY_PORT;

	for (size_t i = 0; i < n; i++) {
		const struct fg_policy_key *k = &entries[i].key;

		if (k->dir == FG_DIR_META)
			continue;
		/* either side: the local one is never a wildcard, so this errs safe */
		if (k->src_id == FG_ID_ANY || k->dst_id == FG_ID_ANY)
			shape &= (__u8)~FG_SHAPE_NO_ANY_PEER;
		if (k->port == 0)
			shape &= (__u8)~FG_SHAPE_NO_ANY_PORT;
	}
	return shape;
}

static int write_generation(int map_fd, __u32 generation, __u8 shape)
{
	struct fg_policy_key key = {.dir = FG_DIR_META};
	struct fg_policy_value value = {.action = FG_ACT_META, .shape = shape,
					.rule_id = generation};

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

int policy_map_swap(int slot_fd, int new_fd, __u8 shape, const char *pin_dir,
		    __u32 *generation)
{
	__u32 zero = 0, gen = 0;
	int err;

	err = next_generation(slot_fd, &gen);
	if (err)
		return err;
	err = write_generation(new_fd, gen, shape);
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

// SPDX-License-Identifier: Apache-2.0
#include "mapfill.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* libbpf 1.x returns -errno from its low-level API, which is passed on. */

enum {
	POLICY_MIN_ENTRIES = 64,
	KEY_MAX = 64,		/* the largest key of the datapath is 40 bytes */
};

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static void freep(void *p)
{
	free(*(void **)p);
}

int fg_test_map_clear(int fd)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	__u8 key[KEY_MAX];
	int r;

	r = bpf_obj_get_info_by_fd(fd, &info, &len);
	if (r < 0)
		return r;
	if (info.key_size > sizeof(key))
		return -E2BIG;
	/* always take the first key: deleting while walking skips entries */
	for (__u32 i = 0; i <= info.max_entries; i++) {
		r = bpf_map_get_next_key(fd, NULL, key);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return r;
		r = bpf_map_delete_elem(fd, key);
		if (r < 0)
			return r;
	}
	return -ENOTEMPTY;	/* more entries than the map holds: not shrinking */
}

static int counters_cpus(struct fg_counter **values)
{
	int n = libbpf_num_possible_cpus();

	if (n <= 0)
		return n < 0 ? n : -EINVAL;
	*values = calloc(n, sizeof(**values));
	return *values ? n : -ENOMEM;
}

int fg_test_counters_zero(int fd)
{
	__attribute__((cleanup(freep))) struct fg_counter *zero = NULL;
	int r = counters_cpus(&zero);

	if (r < 0)
		return r;
	for (__u32 reason = 0; reason < FG_REASON_MAX; reason++) {
		r = bpf_map_update_elem(fd, &reason, zero, BPF_ANY);
		if (r < 0)
			return r;
	}
	return 0;
}

int fg_test_counters_sum(int fd, struct fg_counter sum[FG_REASON_MAX])
{
	__attribute__((cleanup(freep))) struct fg_counter *cpu = NULL;
	int ncpus = counters_cpus(&cpu);
	int r;

	if (ncpus < 0)
		return ncpus;
	for (__u32 reason = 0; reason < FG_REASON_MAX; reason++) {
		r = bpf_map_lookup_elem(fd, &reason, cpu);
		if (r < 0)
			return r;
		sum[reason] = (struct fg_counter){ 0 };
		for (int i = 0; i < ncpus; i++) {
			sum[reason].packets += cpu[i].packets;
			sum[reason].bytes += cpu[i].bytes;
		}
	}
	return 0;
}

static int policy_fill(int fd, __u32 gen, __u8 shape, const struct fg_test_rule *rules, size_t n)
{
	struct fg_policy_key meta_key = { 0 };
	struct fg_policy_value meta = { .action = FG_ACT_META, .shape = shape, .rule_id = gen };
	int r;

	r = bpf_map_update_elem(fd, &meta_key, &meta, BPF_NOEXIST);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		r = bpf_map_update_elem(fd, &rules[i].key, &rules[i].val, BPF_NOEXIST);
		if (r < 0)
			return r;
	}
	return 0;
}

int fg_test_policy_install(int slot_fd, __u32 gen, const struct fg_test_rule *rules, size_t n)
{
	return fg_test_policy_install_shaped(slot_fd, gen, 0, rules, n);
}

int fg_test_policy_install_shaped(int slot_fd, __u32 gen, __u8 shape,
				  const struct fg_test_rule *rules, size_t n)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
	__u32 entries = n + 1 > POLICY_MIN_ENTRIES ? n + 1 : POLICY_MIN_ENTRIES;
	__attribute__((cleanup(closep))) int fd = -1;
	__u32 slot = 0;
	int r;

	fd = bpf_map_create(BPF_MAP_TYPE_HASH, "fg_policy_test", sizeof(struct fg_policy_key),
			    sizeof(struct fg_policy_value), entries, &opts);
	if (fd < 0)
		return fd;
	r = policy_fill(fd, gen, shape, rules, n);
	if (r < 0)
		return r;
	/* the slot holds its own reference; ours goes with the cleanup */
	r = bpf_map_update_elem(slot_fd, &slot, &fd, BPF_ANY);
	return r;
}

int fg_test_policy_remove(int slot_fd)
{
	__u32 slot = 0;
	int r = bpf_map_delete_elem(slot_fd, &slot);

	return r == -ENOENT ? 0 : r;
}

int fg_test_addr_parse(const char *text, __u8 *family, __u8 addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, text, addr) == 1) {
		*family = FG_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, addr) == 1) {
		*family = FG_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

int fg_test_ipcache_put(int fd, const char *addr, const struct fg_ipcache_value *v)
{
	struct fg_ipcache_key k = { 0 };
	int r = fg_test_addr_parse(addr, &k.family, k.addr);

	if (r < 0)
		return r;
	k.prefixlen = FG_IPCACHE_PREFIX_BASE + (k.family == FG_AF_INET ? 32 : 128);
	r = bpf_map_update_elem(fd, &k, v, BPF_ANY);
	return r;
}

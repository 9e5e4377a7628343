/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Filling and reading the datapath's maps by fd, for tests that hold the
 * maps of a skeleton they loaded (or pinned maps they opened). Everything
 * returns 0 or -errno.
 */
#ifndef FG_TEST_MAPFILL_H
#define FG_TEST_MAPFILL_H

#include <stddef.h>
#include <linux/types.h>

#include <fedguard/abi.h>

/* One fg_policy entry. */
struct fg_test_rule {
	struct fg_policy_key key;
	struct fg_policy_value val;
};

/* Deletes every entry of a hash, LRU hash or LPM trie map. */
int fg_test_map_clear(int fd);

/* Zeroes fg_counters on every CPU. */
int fg_test_counters_zero(int fd);

/* fg_counters summed over the possible CPUs, one entry per enum fg_reason. */
int fg_test_counters_sum(int fd, struct fg_counter sum[FG_REASON_MAX]);

/*
 * Builds a policy map the way fg_policy_slot's template defines it (hash,
 * BPF_F_NO_PREALLOC, struct fg_policy_key -> struct fg_policy_value) with
 * the generation entry (all-zero key, FG_ACT_META, rule_id = @gen) and
 * @rules, and makes it the active one by storing it in slot 0.
 */
int fg_test_policy_install(int slot_fd, __u32 gen, const struct fg_test_rule *rules, size_t n);

/* The same with @shape (enum fg_policy_shape bits) in the generation entry. */
int fg_test_policy_install_shaped(int slot_fd, __u32 gen, __u8 shape,
				  const struct fg_test_rule *rules, size_t n);

/* Empties slot 0: no policy installed. */
int fg_test_policy_remove(int slot_fd);

/* Text IPv4 or IPv6 address -> FG_AF_INET or FG_AF_INET6 and its bytes. */
int fg_test_addr_parse(const char *text, __u8 *family, __u8 addr[16]);

/* fg_ipcache: the host route (/32 or /128) of @addr -> @v. */
int fg_test_ipcache_put(int fd, const char *addr, const struct fg_ipcache_value *v);

#endif /* FG_TEST_MAPFILL_H */

// SPDX-License-Identifier: Apache-2.0
/*
 * The agent's state document (agent/state.c) and address parsing
 * (agent/addr.c): numbering that never reuses, garbage collection of
 * numbers, the atomic state file, and the address forms operators type.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fedguard/abi.h>

#include "addr.h"
#include "state.h"

static struct json_object *workload(const char *cgroup)
{
	struct json_object *w = json_object_new_object();

	json_object_object_add(w, "cgroup", json_object_new_string(cgroup));
	return w;
}

Test(state, numbers_start_at_the_dynamic_range_and_are_stable)
{
	struct json_object *s = state_new();
	__u32 a, b, again;

	cr_assert_eq(state_identity(s, "spiffe://td/a", &a), 0);
	cr_assert_eq(state_identity(s, "spiffe://td/b", &b), 0);
	cr_assert_eq(state_identity(s, "spiffe://td/a", &again), 0);
	cr_expect_eq(a, FG_ID_DYNAMIC_MIN);
	cr_expect_eq(b, FG_ID_DYNAMIC_MIN + 1);
	cr_expect_eq(again, a, "one ID, two numbers");
	cr_expect_eq(state_identity_find(s, "spiffe://td/b"), b);
	cr_expect_eq(state_identity_find(s, "spiffe://td/none"), 0);
	json_object_put(s);
}

Test(state, a_forgotten_number_is_never_handed_out_again)
{
	struct json_object *s = state_new();
	__u32 a, b, a2;

	state_put(s, "workloads", "spiffe://td/a", workload("/a"));
	cr_assert_eq(state_identity(s, "spiffe://td/a", &a), 0);
	state_put(s, "workloads", "spiffe://td/a", NULL);
	state_collect(s);
	cr_expect_eq(state_identity_find(s, "spiffe://td/a"), 0, "number kept without a reference");

	cr_assert_eq(state_identity(s, "spiffe://td/b", &b), 0);
	cr_assert_eq(state_identity(s, "spiffe://td/a", &a2), 0);
	cr_expect_neq(b, a, "a forgotten number was reused");
	cr_expect_neq(a2, a, "a re-registered ID got its old number back");
	json_object_put(s);
}

Test(state, collect_keeps_what_is_referenced)
{
	struct json_object *s = state_new(), *q = json_object_new_object();
	__u32 n, td;

	state_put(s, "workloads", "spiffe://td1/w", workload("/w"));
	state_put(s, "quarantine", "spiffe://td2", q);
	cr_assert_eq(state_identity(s, "spiffe://td1/w", &n), 0);
	cr_assert_eq(state_identity(s, "spiffe://td1/gone", &n), 0);
	cr_assert_eq(state_trust_domain(s, "td1", &td), 0);
	cr_assert_eq(state_trust_domain(s, "td2", &td), 0);
	cr_assert_eq(state_trust_domain(s, "td3", &td), 0);
	state_collect(s);
	cr_expect_neq(state_identity_find(s, "spiffe://td1/w"), 0);
	cr_expect_eq(state_identity_find(s, "spiffe://td1/gone"), 0);
	cr_expect(json_object_object_get_ex(state_section(s, "trust_domains"), "td1", NULL));
	cr_expect(json_object_object_get_ex(state_section(s, "trust_domains"), "td2", NULL),
		  "a quarantined trust domain lost its number");
	cr_expect(!json_object_object_get_ex(state_section(s, "trust_domains"), "td3", NULL));
	json_object_put(s);
}

Test(state, save_and_load_round_trip)
{
	char dir[] = "/tmp/fg-state-XXXXXX", path[PATH_MAX];
	struct json_object *s = state_new(), *back = NULL;
	__u32 n;

	cr_assert_not_null(mkdtemp(dir));
	state_put(s, "workloads", "spiffe://td/a", workload("/sys/fs/cgroup/a"));
	cr_assert_eq(state_identity(s, "spiffe://td/a", &n), 0);
	cr_assert_eq(state_save(dir, s), 0);
	snprintf(path, sizeof(path), "%s/%s.tmp", dir, STATE_FILE);
	cr_expect_neq(access(path, F_OK), 0, "temporary file left behind");
	cr_assert_eq(state_load(dir, &back), 0);
	cr_expect(json_object_equal(s, back), "state changed on the way through the disk");
	snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
	unlink(path);
	rmdir(dir);
	json_object_put(s);
	json_object_put(back);
}

Test(state, load_refuses_a_foreign_file_and_starts_empty_without_one)
{
	char dir[] = "/tmp/fg-state-XXXXXX", path[PATH_MAX];
	struct json_object *s = NULL;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(state_load(dir, &s), 0);
	cr_expect_eq(json_object_object_length(state_section(s, "workloads")), 0);
	json_object_put(s);

	snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{\"format\": 99}", f);
	fclose(f);
	s = NULL;
	cr_expect_eq(state_load(dir, &s), -EINVAL);
	cr_expect_null(s, "output written on failure");
	unlink(path);
	rmdir(dir);
}

struct addr_row {
	const char *text;
	int ok;			/* 0 or -EINVAL */
	__u8 family;
	__u32 len;		/* prefix length */
	const char *canonical;
};

static const struct addr_row addr_rows[] = {
	{ "10.0.0.1", 0, FG_AF_INET, 32, "10.0.0.1" },
	{ "10.0.0.0/24", 0, FG_AF_INET, 24, "10.0.0.0/24" },
	{ "0.0.0.0/0", 0, FG_AF_INET, 0, "0.0.0.0/0" },
	{ "fd00::1", 0, FG_AF_INET6, 128, "fd00::1" },
	{ "FD00:0:0::/64", 0, FG_AF_INET6, 64, "fd00::/64" },
	{ "10.0.0.1/24", -EINVAL },	/* host bits set */
	{ "10.0.0.0/33", -EINVAL },
	{ "10.0.0.0/", -EINVAL },
	{ "10.0.0.0/-1", -EINVAL },
	{ "10.0.0.0/+8", -EINVAL },
	{ "10.0.0.0/8x", -EINVAL },
	{ "10.0.0", -EINVAL },
	{ "fd00::/129", -EINVAL },
	{ "host.example", -EINVAL },
	{ "", -EINVAL },
	{ "/24", -EINVAL },
};

Test(addr, prefixes_as_operators_write_them)
{
	for (size_t i = 0; i < sizeof(addr_rows) / sizeof(addr_rows[0]); i++) {
		const struct addr_row *row = &addr_rows[i];
		struct fg_ipcache_key k = { .prefixlen = 12345 };
		char buf[64];
		int r = addr_parse_prefix(row->text, &k);

		cr_expect_eq(r, row->ok, "'%s': got %d, want %d", row->text, r, row->ok);
		if (r) {
			cr_expect_eq(k.prefixlen, 12345, "'%s': output written on failure", row->text);
			continue;
		}
		cr_expect_eq(k.family, row->family, "'%s': family", row->text);
		cr_expect_eq(k.prefixlen, FG_IPCACHE_PREFIX_BASE + row->len, "'%s': length",
			     row->text);
		cr_assert_eq(addr_format_prefix(&k, buf, sizeof(buf)), 0);
		cr_expect_str_eq(buf, row->canonical, "'%s': canonical form", row->text);
	}
	cr_expect_eq(addr_parse_prefix(NULL, NULL), -EINVAL);
}

Test(addr, node_addresses_map_ipv4_into_ipv6)
{
	const __u8 mapped[16] = { [10] = 0xff, [11] = 0xff, [12] = 192, [13] = 0, [14] = 2, [15] = 1 };
	__u8 out[16];

	cr_assert_eq(addr_parse_node("192.0.2.1", out), 0);
	cr_expect_arr_eq(out, mapped, 16);
	cr_assert_eq(addr_parse_node("2001:db8::1", out), 0);
	cr_expect_eq(out[0], 0x20);
	cr_expect_eq(addr_parse_node("192.0.2.0/24", out), -EINVAL);
	cr_expect_eq(addr_parse_node(NULL, out), -EINVAL);
}

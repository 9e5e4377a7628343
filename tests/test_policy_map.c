// SPDX-License-Identifier: Apache-2.0
/*
 * agent/policy_map.c: a policy map filled and read back in batches, in the
 * real kernel, with the BTF of the real object (the skeleton is loaded,
 * never attached or pinned). Sizes cross the batch of 4,096 entries, so
 * that the calls after the first carry the kernel's cursor.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fedguard/abi.h>
/* after abi.h: the skeleton's rodata struct names the ABI's types */
#include "fedguard.skel.h"

#include "policy_compile.h"
#include "policy_map.h"
#include "lib/require.h"

static struct fedguard *skel;

static void setup(void)
{
	fg_test_require_root_bpf();
	skel = fedguard__open_and_load();
	cr_assert_not_null(skel, "load: %s", strerror(errno));
}

static void teardown(void)
{
	fedguard__destroy(skel);
}

TestSuite(policy_map, .init = setup, .fini = teardown, .timeout = 60);

static int new_map(__u32 max_entries)
{
	struct policy_map_spec spec;
	int fd;

	cr_assert_eq(policy_spec_from_btf(bpf_object__btf(skel->obj), max_entries, &spec), 0);
	fd = policy_map_create(&spec);
	policy_spec_release(&spec);
	cr_assert_geq(fd, 0, "create: %s", strerror(-fd));
	return fd;
}

/* @n distinct entries, each value telling its key apart (rule_id = index). */
static struct policy_entry *make_entries(size_t n)
{
	struct policy_entry *e = calloc(n, sizeof(*e));

	cr_assert_not_null(e);
	for (size_t i = 0; i < n; i++) {
		e[i].key.dir = i % 2 ? FG_DIR_INGRESS : FG_DIR_EGRESS;
		e[i].key.src_id = 1000 + (__u32)(i / 500);
		e[i].key.dst_id = 5000 + (__u32)(i % 7);
		e[i].key.port = (__u16)(i % 500);
		e[i].key.proto = i % 3 ? IPPROTO_TCP : IPPROTO_UDP;
		e[i].value.action = i % 11 ? FG_ACT_ALLOW : FG_ACT_DENY;
		e[i].value.rule_id = (__u32)i + 1;
	}
	return e;
}

static int by_rule(const void *a, const void *b)
{
	const struct policy_entry *x = a, *y = b;

	return (x->value.rule_id > y->value.rule_id) - (x->value.rule_id < y->value.rule_id);
}

/* Fills a fresh map with @n entries, dumps it, and expects the same set. */
static void round_trip(size_t n)
{
	struct policy_entry *in = make_entries(n), *out = NULL;
	size_t n_out = 0;
	int fd = new_map((__u32)n + 1);

	cr_assert_eq(policy_map_fill(fd, in, n), 0, "fill %zu", n);
	cr_assert_eq(policy_map_dump(fd, &out, &n_out), 0, "dump %zu", n);
	cr_assert_eq(n_out, n, "%zu entries written, %zu read back", n, n_out);
	qsort(out, n_out, sizeof(*out), by_rule);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(memcmp(&in[i], &out[i], sizeof(in[i])), 0, "entry %zu differs", i);
	free(in);
	free(out);
	close(fd);
}

Test(policy_map, an_empty_map_dumps_no_entry)
{
	round_trip(0);
}

Test(policy_map, a_set_within_one_batch_comes_back_whole)
{
	round_trip(100);
}

Test(policy_map, sets_across_many_batches_come_back_whole)
{
	round_trip(4096);
	round_trip(4097);
	round_trip(20000);
}

Test(policy_map, the_generation_entry_is_not_dumped)
{
	struct policy_entry *in = make_entries(10), *out = NULL;
	struct fg_policy_key meta = {.dir = FG_DIR_META};
	struct fg_policy_value gen = {.action = FG_ACT_META, .rule_id = 42};
	size_t n_out = 0;
	__u32 g = 0;
	int fd = new_map(64);

	cr_assert_eq(policy_map_fill(fd, in, 10), 0);
	cr_assert_eq(bpf_map_update_elem(fd, &meta, &gen, BPF_ANY), 0);
	cr_assert_eq(policy_map_dump(fd, &out, &n_out), 0);
	cr_expect_eq(n_out, 10);
	for (size_t i = 0; i < n_out; i++)
		cr_expect_neq(out[i].key.dir, FG_DIR_META, "entry %zu is the generation", i);
	cr_expect_eq(policy_map_generation(fd, &g), 0);
	cr_expect_eq(g, 42);
	free(in);
	free(out);
	close(fd);
}

Test(policy_map, a_set_larger_than_the_map_is_refused)
{
	struct policy_entry *in = make_entries(5000);
	int fd = new_map(4500);

	cr_expect_eq(policy_map_fill(fd, in, 5000), -E2BIG);
	free(in);
	close(fd);
}

/* --- the shape of a rule set: no kernel needed ---------------------------- */

static struct policy_entry rule(__u8 dir, __u32 src, __u32 dst, __u16 port)
{
	return (struct policy_entry){ .key = { .src_id = src, .dst_id = dst, .port = port,
					       .proto = IPPROTO_TCP, .dir = dir },
				      .value = { .action = FG_ACT_ALLOW, .rule_id = 1 } };
}

Test(policy_shape, each_wildcard_clears_its_bit)
{
	const __u8 none = FG_SHAPE_NO_ANY_PEER | FG_SHAPE_NO_ANY_PORT;
	struct policy_entry exact[] = { rule(FG_DIR_EGRESS, 1000, 2000, 80),
					rule(FG_DIR_INGRESS, 2000, 1000, 443) };
	struct policy_entry any_port[] = { rule(FG_DIR_EGRESS, 1000, 2000, 80),
					   rule(FG_DIR_EGRESS, 1000, 2000, 0) };
	struct policy_entry any_peer_in[] = { rule(FG_DIR_INGRESS, FG_ID_ANY, 1000, 80) };
	struct policy_entry any_peer_out[] = { rule(FG_DIR_EGRESS, 1000, FG_ID_ANY, 80) };
	struct policy_entry both[] = { rule(FG_DIR_EGRESS, 1000, FG_ID_ANY, 0) };
	struct policy_entry meta[] = { { .key = { .dir = FG_DIR_META },
					 .value = { .action = FG_ACT_META } } };

	cr_expect_eq(policy_map_shape(NULL, 0), none, "an empty set has no wildcard");
	cr_expect_eq(policy_map_shape(exact, 2), none);
	cr_expect_eq(policy_map_shape(any_port, 2), FG_SHAPE_NO_ANY_PEER);
	cr_expect_eq(policy_map_shape(any_peer_in, 1), FG_SHAPE_NO_ANY_PORT);
	cr_expect_eq(policy_map_shape(any_peer_out, 1), FG_SHAPE_NO_ANY_PORT);
	cr_expect_eq(policy_map_shape(both, 1), 0);
	cr_expect_eq(policy_map_shape(meta, 1), none, "the generation entry is no rule");
}

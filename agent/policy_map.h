/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fg_policy rule map and its atomic replacement.
 *
 * The datapath reaches the active rules through slot 0 of fg_policy_slot
 * (ARRAY_OF_MAPS). A new rule set is built in a fresh map that no program
 * sees yet, then installed with one update of slot 0: every lookup sees
 * either the old map or the new one, never a mix. Usage:
 *
 *	fd = policy_map_create(&spec);
 *	policy_map_fill(fd, entries, n);
 *	policy_map_swap(slot_fd, fd, pin_dir, &generation);
 *
 * The all-zero key holds the generation (FG_ACT_META, rule_id); swap writes
 * it. Swaps must be serialized by the caller: two concurrent swaps may both
 * read the same previous generation.
 */
#ifndef FEDGUARD_POLICY_MAP_H
#define FEDGUARD_POLICY_MAP_H

#include <linux/bpf.h>
#include <linux/types.h>

struct btf;
struct policy_entry;

#define POLICY_MAP_NAME		   "fg_policy"
#define POLICY_SLOT_MAP_NAME	   "fg_policy_slot"
#define POLICY_MAX_ENTRIES_DEFAULT 131072
/*
 * Rules come and go by the thousand; no preallocation keeps an empty map
 * small. The inner map definition in the BPF object must carry the same
 * flags: the kernel refuses an inner map whose flags differ.
 */
#define POLICY_MAP_FLAGS BPF_F_NO_PREALLOC

/* What a new fg_policy map is made of. */
struct policy_map_spec {
	int btf_fd;	     /* owned; released by policy_spec_release() */
	__u32 key_type_id;   /* struct fg_policy_key in that BTF */
	__u32 value_type_id; /* struct fg_policy_value in that BTF */
	__u32 max_entries;
};

/* From the BTF of a loaded BPF object (bpf_object__btf()). */
int policy_spec_from_btf(const struct btf *btf, __u32 max_entries, struct policy_map_spec *spec);

/* From an existing fg_policy map: same BTF, same size. */
int policy_spec_from_map(int map_fd, struct policy_map_spec *spec);

void policy_spec_release(struct policy_map_spec *spec);

/* A new, empty fg_policy map (no generation entry yet); returns its fd. */
int policy_map_create(const struct policy_map_spec *spec);

/*
 * Writes @n entries into a policy map in batches (BPF_MAP_UPDATE_BATCH): a
 * few bpf() calls for the whole set instead of one per entry. Meant for a
 * map no program sees yet; on failure the map holds an unknown subset.
 */
int policy_map_fill(int map_fd, const struct policy_entry *entries, size_t n);

/*
 * Every entry of a policy map but the generation entry, unsorted, read in
 * batches (BPF_MAP_LOOKUP_BATCH). *out is malloc()ed, written on success.
 */
int policy_map_dump(int map_fd, struct policy_entry **out, size_t *n_out);

/* Opens <pin_dir>/fg_policy_slot; returns its fd. */
int policy_slot_open(const char *pin_dir);

/* The map in slot 0; returns its fd, -ENOENT when the slot is empty. */
int policy_map_active(int slot_fd);

/* Reads the generation entry of a policy map; -ENOENT when it has none. */
int policy_map_generation(int map_fd, __u32 *generation);

/*
 * The enum fg_policy_shape bits of a rule set: the wildcards none of its
 * entries has, whose probes the datapath may skip.
 */
__u8 policy_map_shape(const struct policy_entry *entries, size_t n);

/*
 * Writes the generation entry of new_fd (the active map's generation + 1,
 * or 1 when the slot is empty, and @shape: policy_map_shape() of what
 * new_fd holds), installs new_fd in slot 0 and pins it at
 * <pin_dir>/fg_policy in place of the previous pin.
 */
int policy_map_swap(int slot_fd, int new_fd, __u8 shape, const char *pin_dir,
		    __u32 *generation);

/* Pins the map in slot 0 at <pin_dir>/fg_policy (repairs an outdated pin). */
int policy_map_pin_active(int slot_fd, const char *pin_dir);

#endif /* FEDGUARD_POLICY_MAP_H */

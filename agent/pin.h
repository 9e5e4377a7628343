/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pin layout of an instance under FG_PIN_ROOT (bpffs):
 *
 *	<instance>/<map name>		every map of the object, and fg_policy
 *	<instance>/progs/<prog name>	every loaded program
 *	<instance>/links/<prog name>	the cgroup link of a cgroup program
 *
 * bpffs refuses '.' in names. A name with PIN_TMP_MARK is a temporary pin
 * on its way to a rename: '-' appears in no map or program name (C
 * identifiers) and in no pin of the layout.
 */
#ifndef FEDGUARD_PIN_H
#define FEDGUARD_PIN_H

#include <stdbool.h>
#include <stddef.h>

#define PIN_PROGS_DIR "progs"
#define PIN_LINKS_DIR "links"
#define PIN_TMP_MARK  "-tmp-"

/*
 * Writes FG_PIN_ROOT/<instance>[/<sub>][/<name>] into buf; sub and name may
 * be NULL. -ENAMETOOLONG if it does not fit.
 */
int pin_path(char *buf, size_t size, const char *instance, const char *sub, const char *name);

/* Creates the instance directory and its progs/ and links/ subdirectories. */
int pin_dirs_create(const char *instance);

/* Whether a pin name is a temporary one (see PIN_TMP_MARK). */
bool pin_is_temporary(const char *name);

/* Whether a path exists (bpffs: whether something is pinned there). */
bool pin_exists(const char *path);

/*
 * Pins fd at path, replacing what is pinned there in one rename(2): the path
 * never disappears and never names a half-made pin.
 */
int pin_replace(int fd, const char *path);

/* Unlinks everything below dir, then dir itself. -ENOENT if dir is absent. */
int pin_remove_tree(const char *dir);

/*
 * Calls fn, in name order, for every entry of dir that is neither a
 * directory nor a temporary pin, stopping at the first negative return.
 * -ENOENT if dir is absent.
 */
int pin_for_each(const char *dir, int (*fn)(const char *dir, const char *name, void *arg),
		 void *arg);

#endif /* FEDGUARD_PIN_H */

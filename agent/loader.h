/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loads the fedguard BPF object, pins it and attaches it: a fresh install,
 * or the adoption of what a previous agent of the same instance left pinned
 * (maps reused, links updated in place, TC filters replaced in place, so
 * enforcement never pauses). Also removes an instance entirely.
 *
 * All functions log the cause of a failure themselves.
 */
#ifndef FEDGUARD_LOADER_H
#define FEDGUARD_LOADER_H

#include <limits.h>
#include <stdbool.h>

#include <linux/types.h>

#include "sys.h"

struct fedguard;

#define LOADER_AUTH_SYN_RTO_MS_DEFAULT 4

struct loader_opts {
	const char *instance;
	const char *cgroup;	   /* --cgroup as given: absolute or relative */
	const char *const *ifaces; /* --iface names */
	unsigned int n_ifaces;
	__u32 auth_syn_rto_ms;	  /* rodata cfg_auth_syn_rto_ms */
	__u32 policy_max_entries; /* of fg_policy maps this agent creates */
	bool events_allow;	  /* rodata cfg_events_allow */
	__u32 events_rate;	  /* rodata cfg_events_rate, per CPU; 0 = no limit */
	__u32 events_burst;	  /* rodata cfg_events_burst */
	__u16 tun_port;		  /* rodata cfg_tun_port: the redirect listener, 0 = none */
	__u32 tun_addr4;	  /* rodata cfg_tun_addr4, network order */
	__u32 tun_addr6[4];	  /* rodata cfg_tun_addr6, network order */
};

/* A running instance: what loader_start() set up. */
struct loader {
	struct fedguard *skel;	  /* loaded; maps and programs pinned */
	struct sys_cgroup cgroup; /* the managed cgroup subtree root */
	char pin_dir[PATH_MAX];	  /* FG_PIN_ROOT/<instance> */
	char instance[SYS_INSTANCE_NAME_MAX + 1];
	int lock_fd;  /* holds /run/fedguard/<instance>.lock */
	bool adopted; /* pinned state of a previous agent reused */
};

/* Root, BTF of the running kernel: what every start needs. */
int loader_check_host(void);

/* Installs or adopts the instance described by opts. */
int loader_start(const struct loader_opts *opts, struct loader **out);

/*
 * Releases the agent's handles. Enforcement stays: links, programs and
 * maps are pinned, TC filters hold their programs.
 */
void loader_free(struct loader *l);

static inline void loader_freep(struct loader **l)
{
	if (*l)
		loader_free(*l);
}

#define _cleanup_loader_ __attribute__((cleanup(loader_freep)))

/*
 * Detaches and unpins everything of an instance, and removes its lock.
 * Refuses while an agent of the instance runs. An instance that is not
 * installed is not an error. Needs no cgroup.
 */
int loader_uninstall(const char *instance);

#endif /* FEDGUARD_LOADER_H */

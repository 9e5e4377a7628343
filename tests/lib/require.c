// SPDX-License-Identifier: Apache-2.0
#include "require.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <criterion/criterion.h>

bool fg_test_in_ci(void)
{
	const char *ci = getenv("CI");

	return ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
}

void fg_test_unavailable(const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (fg_test_in_ci())
		cr_assert_fail("CI=true, so this is a failure, not a skip: %s", reason);
	cr_skip_test("%s (set CI=true to make this a failure)", reason);
}

/* 1 when the kernel loads programs of @type, else a reason in @why. */
static int probe_prog_type(enum bpf_prog_type type, const char *name, char *why, size_t n)
{
	int r = libbpf_probe_bpf_prog_type(type, NULL);

	if (r == 1)
		return 1;
	snprintf(why, n, "the kernel does not load %s programs (%s)", name,
		 r < 0 ? strerror(-r) : "unsupported");
	return 0;
}

void fg_test_require_root_bpf(void)
{
	char why[256];

	if (geteuid() != 0)
		fg_test_unavailable("needs root to load BPF programs (euid %u)", geteuid());
	if (!probe_prog_type(BPF_PROG_TYPE_SCHED_CLS, "tc (SCHED_CLS)", why, sizeof(why)) ||
	    !probe_prog_type(BPF_PROG_TYPE_CGROUP_SKB, "cgroup_skb", why, sizeof(why)))
		fg_test_unavailable("%s", why);
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
		fg_test_unavailable("no kernel BTF (/sys/kernel/btf/vmlinux): %s", strerror(errno));
}

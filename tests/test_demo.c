// SPDX-License-Identifier: Apache-2.0
/*
 * README's first command: the federated demo (scripts/demo.sh) on this
 * build. The demo checks its own story: every call allowed or denied as it
 * says, the encrypted calls' secrets absent from the capture between the
 * nodes and the direct call's present, the quarantined workload's live
 * connections cut; it exits 1 when anything differs. It must also leave
 * nothing behind.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/require.h"

enum { DEMO_S = 400 };	/* the whole demo, set-up and clean-up included */

static const char log_path[] = "/tmp/fedguard-demo-test.log";

static int sh(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(demo, runs_its_story_and_leaves_nothing_behind, .timeout = DEMO_S + 60)
{
	const char *src = getenv("FG_SOURCE_ROOT"), *build = getenv("FG_BUILD");
	char cmd[4096];
	int r;

	fg_test_require_root_bpf();
	cr_assert(src && build, "FG_SOURCE_ROOT and FG_BUILD come from meson");
	snprintf(cmd, sizeof(cmd), "cd %s && FG_BUILD=%s timeout %d bash scripts/demo.sh >%s 2>&1",
		 src, build, DEMO_S, log_path);
	r = sh(cmd);
	if (r != 0)
		sh("tail -n 40 /tmp/fedguard-demo-test.log >&2");
	cr_expect_eq(r, 0, "the demo exited %d (its output: %s)", r, log_path);
	cr_expect_eq(sh("grep -q 'not in the capture' /tmp/fedguard-demo-test.log"), 0,
		     "the demo showed no encrypted call");
	cr_expect_neq(sh("ip netns list | grep -q fgdemo"), 0, "the demo left namespaces");
	cr_expect_neq(access("/sys/fs/bpf/fedguard/demo-shop1", F_OK), 0,
		      "the demo left its pins");
	cr_expect_neq(access("/tmp/fedguard-demo", F_OK), 0, "the demo left its directory");
	if (r == 0)
		unlink(log_path);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardd's refusals, as an operator meets them: each names its cause,
 * exits 1 (2 for usage), and leaves nothing installed behind.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/require.h"
#include "lib/sandbox.h"

static char output[16384];

/* Runs fedguardd with @args; its exit status, stdout and stderr in `output`. */
__attribute__((format(printf, 1, 2))) static int agent(const char *fmt, ...)
{
	char args[2048], cmd[4096];
	va_list ap;
	size_t n;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s %s 2>&1", getenv("FEDGUARDD"), args);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(output, 1, sizeof(output) - 1, p);
	output[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_refusal(int status, int want, const char *needle)
{
	cr_expect_eq(status, want, "exit %d, want %d: %s", status, want, output);
	cr_expect(strstr(output, needle) != NULL, "no '%s' in: %s", needle, output);
}

Test(fedguardd, usage_errors_exit_2)
{
	expect_refusal(agent("--frobnicate"), 2, "fedguardd --help");
	expect_refusal(agent("--instance x"), 2, "--cgroup");
	expect_refusal(agent("--instance 'a.b' --cgroup x"), 2, "a.b");
	expect_refusal(agent("--cgroup x --auth-syn-rto-ms 0"), 2, "--auth-syn-rto-ms");
	expect_refusal(agent("--cgroup x --node-address nowhere"), 2, "nowhere");
	cr_expect_eq(agent("--help"), 0, "%s", output);
	cr_expect(strstr(output, "--uninstall") != NULL);
}

Test(fedguardd, refuses_without_root)
{
	char cmd[PATH_MAX + 128];
	int st;

	fg_test_require_root_bpf();	/* dropping to nobody needs root */
	snprintf(cmd, sizeof(cmd), "setpriv --reuid=65534 --regid=65534 --clear-groups %s "
		 "--instance fgnoroot --cgroup x >/tmp/fgnoroot.out 2>&1", getenv("FEDGUARDD"));
	st = system(cmd);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
	cr_expect_eq(system("grep -qi root /tmp/fgnoroot.out"), 0, "message does not say root");
	unlink("/tmp/fgnoroot.out");
}

Test(fedguardd, refuses_what_does_not_exist_and_installs_nothing)
{
	char inst[64], dir[PATH_MAX];

	fg_test_require_root_bpf();
	snprintf(inst, sizeof(inst), "fgref%d", getpid());
	expect_refusal(agent("--instance %s --cgroup /sys/fs/cgroup/unified/no/such/%s", inst, inst),
		       1, "no/such");
	expect_refusal(agent("--instance %s --cgroup /tmp", inst), 1, "/tmp");
	snprintf(dir, sizeof(dir), "/sys/fs/bpf/fedguard/%s", inst);
	cr_expect_neq(access(dir, F_OK), 0, "a refused start left pins at %s", dir);
}

Test(fedguardd, refuses_an_interface_that_does_not_exist)
{
	struct sandbox sb;
	char dir[PATH_MAX];
	int r;

	fg_test_require_root_bpf();
	r = sb_setup(&sb, false);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	expect_refusal(agent("--instance %s --cgroup %s --state-dir %s --iface fgnosuch0",
			     sb.instance, sb.cg_root, sb_state_dir(&sb)),
		       1, "fgnosuch0");
	snprintf(dir, sizeof(dir), "%s", sb.pin_dir);
	cr_expect_neq(access(dir, F_OK), 0, "a refused start left pins");
	sb_teardown(&sb);
}

Test(fedguardd, a_second_agent_of_an_instance_is_refused)
{
	struct sandbox sb;
	int r;

	fg_test_require_root_bpf();
	r = sb_setup(&sb, false);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	r = sb_agent_start(&sb);
	cr_assert_eq(r, 0, "first agent: %s", strerror(-r));
	/* the same socket: refused before the kernel is touched */
	r = agent("--instance %s --cgroup %s --state-dir %s", sb.instance, sb.cg_root,
		  sb_state_dir(&sb));
	expect_refusal(r, 1, ".sock");
	/* another socket, same instance: the lock says who runs it */
	r = agent("--instance %s --cgroup %s --state-dir %s --control-socket /run/fedguard/%s-b.sock",
		  sb.instance, sb.cg_root, sb_state_dir(&sb), sb.instance);
	expect_refusal(r, 1, "already running");
	sb_teardown(&sb);
}

Test(fedguardd, uninstall_of_an_unknown_instance_says_so)
{
	fg_test_require_root_bpf();
	cr_expect_eq(agent("--instance fgnever%d --uninstall", getpid()), 0, "%s", output);
	cr_expect(strstr(output, "not installed") != NULL, "%s", output);
}

Test(fedguardd, tc_perimeter_is_attached_replaced_and_removed)
{
	struct sandbox sb;
	char veth[32];
	int r;

	fg_test_require_root_bpf();
	r = sb_setup(&sb, false);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	snprintf(veth, sizeof(veth), "fgt%d", getpid() % 100000);
	cr_assert_eq(sb_sh("ip link add %sa type veth peer name %sb", veth, veth), 0);

	strcat(veth, "a");
	r = sb_agent_start_args(&sb, "--iface", veth, NULL);
	cr_assert_eq(r, 0, "agent with --iface: %s (log %s)", strerror(-r), sb_log_path(&sb));
	cr_expect_eq(sb_sh("tc filter show dev %s ingress | grep -q fg_tc_ingress", veth), 0);
	cr_expect_eq(sb_sh("tc filter show dev %s egress | grep -q fg_tc_egress", veth), 0);

	/* a restart replaces the filters in place: still exactly one each */
	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	cr_assert_eq(sb_agent_start_args(&sb, "--iface", veth, NULL), 0);
	cr_expect_eq(sb_sh("test $(tc filter show dev %s ingress | grep -c fg_tc_ingress) = 1",
			   veth), 0, "filters piled up across a restart");

	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	cr_expect_eq(agent("--instance %s --uninstall", sb.instance), 0, "%s", output);
	cr_expect_neq(sb_sh("tc qdisc show dev %s | grep -q clsact", veth), 0,
		      "an empty clsact qdisc was left behind");
	sb_sh("ip link del %s", veth);
	sb_teardown(&sb);
}

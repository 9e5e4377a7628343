// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The baseline of bench_prog: programs of the datapath's types that decide
 * nothing. BPF_PROG_TEST_RUN of these costs what the test harness, the
 * program call and the packet's set-up cost; fedguard's programs cost that
 * plus their decision. Their verdicts are the ones fedguard's programs give
 * an allowed packet (TC_ACT_UNSPEC: on to the next filter; 1: pass).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int fg_empty_tc(struct __sk_buff *skb)
{
	return -1;
}

SEC("cgroup_skb/egress")
int fg_empty_skb_eg(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int fg_empty_skb_in(struct __sk_buff *skb)
{
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

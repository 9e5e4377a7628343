/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parsing shared by the cgroup_skb programs (data starts at the
 * network header) and the TC programs (data starts at the Ethernet header).
 * Everything is read with bpf_skb_load_bytes, which bounds-checks against
 * the real packet, so a truncated header is an error, not a wild read.
 */
#ifndef FG_BPF_PARSE_H
#define FG_BPF_PARSE_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <fedguard/abi.h>

enum fg_parse_consts {
	FG_ETH_P_IP = 0x0800,
	FG_ETH_P_IPV6 = 0x86DD,
	FG_ETH_HLEN = 14,
	FG_IP_OFFSET_MASK = 0x1fff,
	FG_IPV6_MAX_EXT_HDRS = 4,
	FG_TCP_FLAG_SYN = 0x02,
	FG_TCP_FLAG_ACK = 0x10,
	/* IPv6 extension headers (uapi in6.h defines, absent from vmlinux.h) */
	FG_IPPROTO_HOPOPTS = 0,
	FG_IPPROTO_ROUTING = 43,
	FG_IPPROTO_FRAGMENT = 44,
	FG_IPPROTO_DSTOPTS = 60,
};

enum fg_parse_result {
	FG_PARSE_OK = 0,
	FG_PARSE_NOT_IP = 1,	/* ARP and friends: not ours to judge */
	FG_PARSE_FRAGMENT = 2,	/* non-first fragment: addresses, no ports */
	FG_PARSE_MALFORMED = -1,
};

/* What the verdict needs to know of a packet or a socket operation. */
struct fg_pkt {
	__u32 saddr[4];		/* network order; IPv4 in saddr[0] */
	__u32 daddr[4];
	__u16 sport;		/* network order, 0 for protocols without ports */
	__u16 dport;
	__u8 family;		/* enum fg_family */
	__u8 proto;
	__u8 tcp_flags;
	__u8 pad;
	__u32 len;
};

static __always_inline int fg_parse_ports(struct __sk_buff *skb, __u32 off, struct fg_pkt *p)
{
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
			return FG_PARSE_MALFORMED;
		p->sport = th.source;
		p->dport = th.dest;
		/* byte 13 of the TCP header holds CWR..FIN */
		p->tcp_flags = ((__u8 *)&th)[13];
		return FG_PARSE_OK;
	}
	if (p->proto == IPPROTO_UDP) {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)))
			return FG_PARSE_MALFORMED;
		p->sport = uh.source;
		p->dport = uh.dest;
	}
	return FG_PARSE_OK;
}

static __always_inline int fg_parse_ipv4(struct __sk_buff *skb, __u32 off, struct fg_pkt *p)
{
	struct iphdr iph;

	if (bpf_skb_load_bytes(skb, off, &iph, sizeof(iph)))
		return FG_PARSE_MALFORMED;
	if (iph.version != 4 || iph.ihl < 5)
		return FG_PARSE_MALFORMED;
	p->family = FG_AF_INET;
	p->proto = iph.protocol;
	p->saddr[0] = iph.saddr;
	p->daddr[0] = iph.daddr;
	/* A non-first fragment has no ports to judge: see ARCHITECTURE.md. */
	if (iph.frag_off & bpf_htons(FG_IP_OFFSET_MASK))
		return FG_PARSE_FRAGMENT;
	return fg_parse_ports(skb, off + iph.ihl * 4, p);
}

static __always_inline int fg_parse_ipv6(struct __sk_buff *skb, __u32 off, struct fg_pkt *p)
{
	struct ipv6hdr ip6h;
	__u8 nexthdr;

	if (bpf_skb_load_bytes(skb, off, &ip6h, sizeof(ip6h)))
		return FG_PARSE_MALFORMED;
	if (ip6h.version != 6)
		return FG_PARSE_MALFORMED;
	p->family = FG_AF_INET6;
	__builtin_memcpy(p->saddr, &ip6h.saddr, 16);
	__builtin_memcpy(p->daddr, &ip6h.daddr, 16);
	nexthdr = ip6h.nexthdr;
	off += sizeof(ip6h);

	for (int i = 0; i < FG_IPV6_MAX_EXT_HDRS; i++) {
		struct ipv6_opt_hdr ext;
		__be16 frag_off;

		if (nexthdr != FG_IPPROTO_HOPOPTS && nexthdr != FG_IPPROTO_ROUTING &&
		    nexthdr != FG_IPPROTO_DSTOPTS && nexthdr != FG_IPPROTO_FRAGMENT)
			break;
		if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)))
			return FG_PARSE_MALFORMED;
		if (nexthdr == FG_IPPROTO_FRAGMENT) {
			if (bpf_skb_load_bytes(skb, off + 2, &frag_off, sizeof(frag_off)))
				return FG_PARSE_MALFORMED;
			if (frag_off & bpf_htons(0xfff8))
				return FG_PARSE_FRAGMENT;
			off += 8;
		} else {
			off += (ext.hdrlen + 1) * 8;
		}
		nexthdr = ext.nexthdr;
	}
	/* more extension headers than we walk: no transport header found */
	if (nexthdr == FG_IPPROTO_HOPOPTS || nexthdr == FG_IPPROTO_ROUTING ||
	    nexthdr == FG_IPPROTO_DSTOPTS || nexthdr == FG_IPPROTO_FRAGMENT)
		return FG_PARSE_MALFORMED;
	p->proto = nexthdr;
	return fg_parse_ports(skb, off, p);
}

/* Parse the packet whose network header starts at @off. */
static __always_inline int fg_parse_l3(struct __sk_buff *skb, __u32 off, struct fg_pkt *p)
{
	p->len = skb->len;
	if (skb->protocol == bpf_htons(FG_ETH_P_IP))
		return fg_parse_ipv4(skb, off, p);
	if (skb->protocol == bpf_htons(FG_ETH_P_IPV6))
		return fg_parse_ipv6(skb, off, p);
	return FG_PARSE_NOT_IP;
}

/* True for the packet that opens a TCP connection (SYN without ACK). */
static __always_inline bool fg_pkt_opens(const struct fg_pkt *p)
{
	return p->proto == IPPROTO_TCP &&
	       (p->tcp_flags & (FG_TCP_FLAG_SYN | FG_TCP_FLAG_ACK)) == FG_TCP_FLAG_SYN;
}

#endif /* FG_BPF_PARSE_H */

// SPDX-License-Identifier: Apache-2.0
#include "packet.h"

/* glibc's netinet/in.h before the uapi headers, which then defer to it */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

enum {
	IPV4_DONT_FRAGMENT = 0x4000,
	IPV4_MORE_FRAGMENTS = 0x2000,
	IPV6_MORE_FRAGMENTS = 1,
	IPV6_EXT_LEN = 8,	/* our extension headers are 8 bytes each */
	TTL = 64,
};

static const __u8 mac_dst[ETH_ALEN] = { 0x02, 0, 0, 0, 0, 0x02 };
static const __u8 mac_src[ETH_ALEN] = { 0x02, 0, 0, 0, 0, 0x01 };

/* The frame under construction: bytes, and where the next header goes. */
struct frame {
	__u8 *p;
	__u32 len;
};

static void *frame_put(struct frame *f, const void *hdr, __u32 n)
{
	__u8 *at = f->p + f->len;

	memcpy(at, hdr, n);
	f->len += n;
	return at;
}

/* RFC 1071 sum over @n bytes, added to @sum; not yet folded. */
static __u32 csum_add(__u32 sum, const void *data, __u32 n)
{
	const __u8 *b = data;

	for (__u32 i = 0; i + 1 < n; i += 2)
		sum += (__u32)b[i] << 8 | b[i + 1];
	if (n & 1)
		sum += (__u32)b[n - 1] << 8;
	return sum;
}

static __u16 csum_fold(__u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((__u16)~sum);
}

/* The sum of the pseudo header the TCP and UDP checksums cover. */
static __u32 pseudo_sum(const struct fg_test_pkt_spec *s, const __u8 *src, const __u8 *dst,
			__u32 l4_len)
{
	int alen = s->family == 4 ? 4 : 16;
	__u32 sum = 0;

	sum = csum_add(sum, src, alen);
	sum = csum_add(sum, dst, alen);
	return sum + s->proto + (l4_len >> 16) + (l4_len & 0xffff);
}

static __u32 l4_hdr_len(const struct fg_test_pkt_spec *s)
{
	return s->proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);
}

/* TCP or UDP header and payload at the end of @f, checksummed. */
static void put_l4(struct frame *f, const struct fg_test_pkt_spec *s, const __u8 *src,
		   const __u8 *dst)
{
	__u32 len = l4_hdr_len(s) + s->payload;
	__u8 *l4 = f->p + f->len;
	__u8 *check;
	__u16 sum;

	if (s->proto == IPPROTO_TCP) {
		struct tcphdr th = {
			.source = htons(s->sport),
			.dest = htons(s->dport),
			.seq = htonl(1000),
			.ack_seq = htonl((s->tcp_flags & FG_TEST_ACK) ? 2000 : 0),
			.doff = sizeof(th) / 4,
			.window = htons(65535),
		};

		/* byte 13 holds CWR..FIN; the struct spells them as bitfields */
		((__u8 *)&th)[13] = s->tcp_flags;
		frame_put(f, &th, sizeof(th));
		check = l4 + offsetof(struct tcphdr, check);
	} else {
		struct udphdr uh = {
			.source = htons(s->sport),
			.dest = htons(s->dport),
			.len = htons(len),
		};

		frame_put(f, &uh, sizeof(uh));
		check = l4 + offsetof(struct udphdr, check);
	}
	for (__u32 i = 0; i < s->payload; i++)
		f->p[f->len++] = 'a' + i % 26;

	sum = csum_fold(csum_add(pseudo_sum(s, src, dst, len), l4, len));
	if (s->proto == IPPROTO_UDP && sum == 0)
		sum = 0xffff;	/* 0 means "no checksum" in UDP */
	memcpy(check, &sum, sizeof(sum));
}

static int put_ipv4(struct frame *f, const struct fg_test_pkt_spec *s)
{
	__u8 ihl = s->ihl ? s->ihl : 5;
	/* a header that claims fewer than 20 bytes still has its 20 bytes here */
	__u32 hlen = ihl < 5 ? sizeof(struct iphdr) : ihl * 4u;
	__u16 frag = s->frag_offset | (s->more_frags ? IPV4_MORE_FRAGMENTS : 0);
	struct iphdr ip = {
		.version = s->version ? s->version : 4,
		.ihl = ihl,
		.tot_len = htons(hlen + l4_hdr_len(s) + s->payload),
		.id = htons(1),
		.frag_off = htons(frag ? frag : IPV4_DONT_FRAGMENT),
		.ttl = TTL,
		.protocol = s->proto,
	};
	__u8 hdr[60] = { 0 };	/* options, if any, stay zero: end of list */

	if (inet_pton(AF_INET, s->src, &ip.saddr) != 1 ||
	    inet_pton(AF_INET, s->dst, &ip.daddr) != 1)
		return -EINVAL;
	memcpy(hdr, &ip, sizeof(ip));
	ip.check = csum_fold(csum_add(0, hdr, hlen));
	memcpy(hdr, &ip, sizeof(ip));
	frame_put(f, hdr, hlen);
	put_l4(f, s, (const __u8 *)&ip.saddr, (const __u8 *)&ip.daddr);
	return 0;
}

static void put_ipv6_ext(struct frame *f, const struct fg_test_pkt_spec *s, __u8 next, bool frag)
{
	__u8 ext[IPV6_EXT_LEN] = { next, 0 };

	if (frag) {
		__u16 off = htons(s->frag_offset << 3 | (s->more_frags ? IPV6_MORE_FRAGMENTS : 0));

		memcpy(ext + 2, &off, sizeof(off));
		ext[7] = 1;	/* identification */
	} else {
		ext[2] = 1;	/* PadN option covering the other 4 bytes */
		ext[3] = 4;
	}
	frame_put(f, ext, sizeof(ext));
}

/* The protocol of header @i after the IPv6 header: options..., fragment, L4. */
static __u8 ipv6_next(const struct fg_test_pkt_spec *s, int i)
{
	if (i < s->v6_dstopts)
		return IPPROTO_DSTOPTS;
	if (i == s->v6_dstopts && s->v6_frag)
		return IPPROTO_FRAGMENT;
	return s->proto;
}

static int put_ipv6(struct frame *f, const struct fg_test_pkt_spec *s)
{
	__u32 exts = s->v6_dstopts + s->v6_frag;
	struct ipv6hdr ip = {
		.version = s->version ? s->version : 6,
		.payload_len = htons(exts * IPV6_EXT_LEN + l4_hdr_len(s) + s->payload),
		.nexthdr = ipv6_next(s, 0),
		.hop_limit = TTL,
	};

	if (inet_pton(AF_INET6, s->src, &ip.saddr) != 1 ||
	    inet_pton(AF_INET6, s->dst, &ip.daddr) != 1)
		return -EINVAL;
	frame_put(f, &ip, sizeof(ip));
	for (int i = 0; i < s->v6_dstopts; i++)
		put_ipv6_ext(f, s, ipv6_next(s, i + 1), false);
	if (s->v6_frag)
		put_ipv6_ext(f, s, s->proto, true);
	put_l4(f, s, ip.saddr.s6_addr, ip.daddr.s6_addr);
	return 0;
}

/* An ARP request "who has dst, tell src". */
static int put_arp(struct frame *f, const struct fg_test_pkt_spec *s)
{
	struct arphdr arp = {
		.ar_hrd = htons(ARPHRD_ETHER),
		.ar_pro = htons(ETH_P_IP),
		.ar_hln = ETH_ALEN,
		.ar_pln = 4,
		.ar_op = htons(ARPOP_REQUEST),
	};
	__u8 spa[4], tpa[4], zero[ETH_ALEN] = { 0 };

	if (inet_pton(AF_INET, s->src, spa) != 1 || inet_pton(AF_INET, s->dst, tpa) != 1)
		return -EINVAL;
	frame_put(f, &arp, sizeof(arp));
	frame_put(f, mac_src, ETH_ALEN);
	frame_put(f, spa, sizeof(spa));
	frame_put(f, zero, ETH_ALEN);
	frame_put(f, tpa, sizeof(tpa));
	return 0;
}

static __u16 ethertype_of(const struct fg_test_pkt_spec *s)
{
	if (s->family == 4)
		return ETH_P_IP;
	return s->family == 6 ? ETH_P_IPV6 : ETH_P_ARP;
}

int fg_test_pkt_build(const struct fg_test_pkt_spec *spec, struct fg_test_pkt *out)
{
	struct frame f = { .p = out->data };
	struct ethhdr eth = { .h_proto = htons(ethertype_of(spec)) };
	int r;

	/* the largest frame: 14 + 60 (v4 options) or 40 + 6 * 8 (v6), 20, payload;
	 * 5 options headers make one more than the datapath walks */
	if (spec->payload > 256 || spec->v6_dstopts > 5 || spec->ihl > 15)
		return -EINVAL;
	if (spec->family && spec->proto != IPPROTO_TCP && spec->proto != IPPROTO_UDP)
		return -EINVAL;
	memcpy(eth.h_dest, mac_dst, ETH_ALEN);
	memcpy(eth.h_source, mac_src, ETH_ALEN);
	frame_put(&f, &eth, sizeof(eth));
	if (spec->family == 4)
		r = put_ipv4(&f, spec);
	else if (spec->family == 6)
		r = put_ipv6(&f, spec);
	else
		r = put_arp(&f, spec);
	if (r < 0)
		return r;
	if (spec->truncate >= f.len)
		return -EINVAL;
	out->len = f.len - spec->truncate;
	return 0;
}

const char *fg_test_pkt_str(const struct fg_test_pkt_spec *s, char *buf, size_t n)
{
	const char *l4 = s->proto == IPPROTO_TCP ? "tcp" : "udp";

	if (!s->family)
		snprintf(buf, n, "arp who-has %s tell %s", s->dst, s->src);
	else if (s->family == 4)
		snprintf(buf, n, "%s4 %s:%u -> %s:%u", l4, s->src, s->sport, s->dst, s->dport);
	else
		snprintf(buf, n, "%s6 [%s]:%u -> [%s]:%u", l4, s->src, s->sport, s->dst, s->dport);
	return buf;
}

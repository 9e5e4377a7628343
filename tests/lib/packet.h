/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small packet builder for BPF_PROG_TEST_RUN: Ethernet frames carrying
 * IPv4 or IPv6 with a TCP or UDP header (correct lengths and checksums),
 * or an ARP request, described by a struct the tables can write inline.
 * The malformation fields are zero for a well-formed packet.
 */
#ifndef FG_TEST_PACKET_H
#define FG_TEST_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

enum fg_test_pkt_consts {
	FG_TEST_ETH_HLEN = 14,
	FG_TEST_PKT_MAX = 512,
};

/* TCP flags, as byte 13 of the header holds them */
enum fg_test_tcp_flags {
	FG_TEST_FIN = 0x01,
	FG_TEST_SYN = 0x02,
	FG_TEST_RST = 0x04,
	FG_TEST_PSH = 0x08,
	FG_TEST_ACK = 0x10,
};

struct fg_test_pkt_spec {
	__u8 family;		/* 4, 6, or 0 for an ARP request */
	__u8 proto;		/* IPPROTO_TCP or IPPROTO_UDP */
	__u8 tcp_flags;		/* enum fg_test_tcp_flags */
	const char *src;	/* addresses as text, of @family */
	const char *dst;
	__u16 sport;		/* host order */
	__u16 dport;
	__u16 payload;		/* bytes of payload after the L4 header */

	/* malformations and variants */
	__u8 version;		/* IP version nibble, when not @family's */
	__u8 ihl;		/* IPv4 header length in words, when not 5 */
	__u16 frag_offset;	/* fragment offset, 8-byte units (v4, or v6 with v6_frag) */
	bool more_frags;	/* the more-fragments flag */
	bool v6_frag;		/* an IPv6 fragment header before L4 */
	__u8 v6_dstopts;	/* this many IPv6 destination options headers first */
	__u16 truncate;		/* bytes cut off the end of the frame */
};

struct fg_test_pkt {
	__u8 data[FG_TEST_PKT_MAX];
	__u32 len;
};

/* Builds the frame @spec describes into @out. 0 or -EINVAL. */
int fg_test_pkt_build(const struct fg_test_pkt_spec *spec, struct fg_test_pkt *out);

/* "tcp4 10.0.0.1:40000 -> 10.0.1.2:80" and the like, for failure messages. */
const char *fg_test_pkt_str(const struct fg_test_pkt_spec *spec, char *buf, size_t n);

#endif /* FG_TEST_PACKET_H */

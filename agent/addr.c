// SPDX-License-Identifier: Apache-2.0
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True when no bit past the first @len of @addr (@bytes long) is set. */
static bool host_bits_clear(const __u8 *addr, unsigned int bytes, unsigned int len)
{
	for (unsigned int bit = len; bit < bytes * 8; bit++)
		if (addr[bit / 8] & (0x80 >> (bit % 8)))
			return false;
	return true;
}

static int parse_len(const char *s, unsigned int max, unsigned int *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

int addr_parse_prefix(const char *s, struct fg_ipcache_key *out)
{
	struct fg_ipcache_key k = {};
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash;
	unsigned int len, bytes;
	size_t n;

	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = 0;
	if (inet_pton(AF_INET, host, k.addr) == 1) {
		k.family = FG_AF_INET;
		bytes = 4;
	} else if (inet_pton(AF_INET6, host, k.addr) == 1) {
		k.family = FG_AF_INET6;
		bytes = 16;
	} else {
		return -EINVAL;
	}
	len = bytes * 8;
	if (slash && parse_len(slash + 1, bytes * 8, &len))
		return -EINVAL;
	if (!host_bits_clear(k.addr, bytes, len))
		return -EINVAL;
	k.prefixlen = FG_IPCACHE_PREFIX_BASE + len;
	*out = k;
	return 0;
}

int addr_parse_node(const char *s, __u8 out[16])
{
	__u8 a[16] = {};

	if (s && inet_pton(AF_INET, s, a + 12) == 1) {
		a[10] = a[11] = 0xff;
	} else if (!s || inet_pton(AF_INET6, s, a) != 1) {
		return -EINVAL;
	}
	memcpy(out, a, 16);
	return 0;
}

int addr_format_prefix(const struct fg_ipcache_key *k, char *buf, size_t len)
{
	int af = k->family == FG_AF_INET ? AF_INET : AF_INET6;
	unsigned int plen = k->prefixlen - FG_IPCACHE_PREFIX_BASE;
	unsigned int full = af == AF_INET ? 32 : 128;
	char host[INET6_ADDRSTRLEN];

	if (!inet_ntop(af, k->addr, host, sizeof(host)))
		return -errno;
	if (plen == full)
		return snprintf(buf, len, "%s", host) < (int)len ? 0 : -ENOSPC;
	return snprintf(buf, len, "%s/%u", host, plen) < (int)len ? 0 : -ENOSPC;
}

socklen_t addr_node_sockaddr(const __u8 node[16], __u16 port, struct sockaddr_storage *ss)
{
	static const __u8 mapped[12] = { [10] = 0xff, [11] = 0xff };

	memset(ss, 0, sizeof(*ss));
	if (memcmp(node, mapped, sizeof(mapped)) == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, node + 12, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, node, 16);
	return sizeof(*sin6);
}

__u16 addr_sockaddr_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

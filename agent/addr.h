/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Addresses as operators write them ("10.0.0.1", "fd00::1", "10.0.0.0/24")
 * and as the datapath keys them (struct fg_ipcache_key, 16-byte node
 * addresses with IPv4 mapped into IPv6).
 */
#ifndef FEDGUARD_ADDR_H
#define FEDGUARD_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#include <fedguard/abi.h>

/*
 * "ADDR" (a host: /32 or /128) or "ADDR/LEN". Host bits beyond LEN must be
 * zero. -EINVAL on anything else.
 */
int addr_parse_prefix(const char *s, struct fg_ipcache_key *out);

/* A host address as the 16 bytes of fg_ipcache_value.node. */
int addr_parse_node(const char *s, __u8 out[16]);

/* The socket address of a node address (IPv4-mapped means IPv4) and port (host order). */
socklen_t addr_node_sockaddr(const __u8 node[16], __u16 port, struct sockaddr_storage *ss);

/* The port (host order) of an AF_INET or AF_INET6 socket address. */
__u16 addr_sockaddr_port(const struct sockaddr_storage *ss);

/* The canonical text of a prefix ("10.0.0.1", "fd00::/64"). */
int addr_format_prefix(const struct fg_ipcache_key *k, char *buf, size_t len);

#endif /* FEDGUARD_ADDR_H */

/* Stand-in for Zephyr v4.2's BSD socket API (include/zephyr/net/socket.h, net_ip.h), what
 * port/zephyr/net.c and agent_thread.c call, with Zephyr's signatures (see ../kernel.h). */
#ifndef ZEPHYR_API_STANDIN_SOCKET_H
#define ZEPHYR_API_STANDIN_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef unsigned short int sa_family_t;
typedef size_t socklen_t;

#define AF_INET 1
#define AF_INET6 2
#define AF_UNIX 6
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_UDP 17
#define ZSOCK_POLLIN 1
#define ZSOCK_MSG_DONTWAIT 0x40

struct in_addr {
	uint8_t s4_addr[4];
};
struct in6_addr {
	uint8_t s6_addr[16];
};
struct sockaddr {
	sa_family_t sa_family;
	char data[22];
};
struct sockaddr_in {
	sa_family_t sin_family;
	uint16_t sin_port;
	struct in_addr sin_addr;
};
struct sockaddr_in6 {
	sa_family_t sin6_family;
	uint16_t sin6_port;
	struct in6_addr sin6_addr;
	uint8_t sin6_scope_id;
};
struct sockaddr_storage {
	sa_family_t ss_family;
	char data[22];
};

static inline struct sockaddr_in6 *net_sin6(const struct sockaddr *addr)
{
	return (struct sockaddr_in6 *)addr;
}
static inline struct sockaddr_in *net_sin(const struct sockaddr *addr)
{
	return (struct sockaddr_in *)addr;
}
uint16_t htons(uint16_t x);

struct zsock_pollfd {
	int fd;
	short events;
	short revents;
};

int zsock_socket(int family, int type, int proto);
int zsock_socketpair(int family, int type, int proto, int *sv);
int zsock_close(int sock);
int zsock_connect(int sock, const struct sockaddr *addr, socklen_t addrlen);
ssize_t zsock_send(int sock, const void *buf, size_t len, int flags);
ssize_t zsock_recv(int sock, void *buf, size_t max_len, int flags);
int zsock_poll(struct zsock_pollfd *fds, int nfds, int timeout);
int zsock_inet_pton(sa_family_t family, const char *src, void *dst);
int zsock_fcntl(int sock, int cmd, int flags);

#endif

/*
 * addr.c: socket addresses.
 *
 * Numeric IPv4 and IPv6 addresses are parsed here without a lookup (so
 * "127.0.0.1" never touches the resolver); Unix paths fill sockaddr_un.
 * ur_push_addr turns a kernel address back into Lua: host, port for IP,
 * the path for Unix.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "uring.h"

int ur_addr_numeric (const char *host, int port, ur_addr *a) {
  memset(a, 0, sizeof *a);
  if (host == NULL || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    a->len = sizeof *in;
    return 1;
  }
  {
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
      in->sin_family = AF_INET;
      in->sin_port = htons((uint16_t)port);
      a->len = sizeof *in;
      return 1;
    }
  }
  {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    const char *h = host;
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
      memcpy(buf, host + 1, n - 2);     /* "[::1]" as in URLs */
      buf[n - 2] = '\0';
      h = buf;
    }
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons((uint16_t)port);
      a->len = sizeof *in6;
      return 1;
    }
  }
  return 0;
}

int ur_addr_unix (const char *path, ur_addr *a) {
  struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
  size_t n = strlen(path);
  memset(a, 0, sizeof *a);
  if (n == 0 || n >= sizeof un->sun_path) return 0;
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n + 1);
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 1;
}

int ur_push_addr (lua_State *L, const struct sockaddr *sa, socklen_t len) {
  char host[INET6_ADDRSTRLEN];
  switch (sa->sa_family) {
    case AF_INET: {
      const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
      inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      lua_pushstring(L, host);
      lua_pushinteger(L, ntohs(in->sin_port));
      return 2;
    }
    case AF_INET6: {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
      inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      lua_pushstring(L, host);
      lua_pushinteger(L, ntohs(in6->sin6_port));
      return 2;
    }
    case AF_UNIX: {
      const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
      size_t off = offsetof(struct sockaddr_un, sun_path);
      if (len <= off) lua_pushliteral(L, "");
      else lua_pushstring(L, un->sun_path);
      return 1;
    }
    default:
      lua_pushnil(L);
      return 1;
  }
}

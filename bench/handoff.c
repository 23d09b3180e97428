/*
 * bench/handoff.c: the floor for moving a connection between two
 * processes, the obvious way: SCM_RIGHTS over a Unix socketpair, each
 * side blocked in recvmsg(2), the sender closing its copy after the
 * send (as ch:send(j, sock) does).  One TCP connection on 127.0.0.1 goes
 * there and back `moves / 2` times; prints microseconds per move.
 * bench/msgring.lua measures the same with uring.workers' channel.
 *
 *   cc -O2 -o build/handoff bench/handoff.c && build/handoff [moves]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pass (int sp, int fd) {
  char b = 'f';
  struct iovec iov = { &b, 1 };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m;
  struct cmsghdr *cm;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  if (sendmsg(sp, &m, 0) != 1) { perror("sendmsg"); exit(1); }
  close(fd);
}

static int take (int sp) {
  char b;
  struct iovec iov = { &b, 1 };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m;
  int fd = -1;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  if (recvmsg(sp, &m, MSG_CMSG_CLOEXEC) != 1) { perror("recvmsg"); exit(1); }
  memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
  return fd;
}

int main (int argc, char **argv) {
  int moves = argc > 1 ? atoi(argv[1]) : 10000, sp[2], lst, cli, conn;
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  struct timespec t0, t1;
  pid_t pid;
  socketpair(AF_UNIX, SOCK_DGRAM, 0, sp);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  lst = socket(AF_INET, SOCK_STREAM, 0);
  bind(lst, (struct sockaddr *)&a, sizeof a);
  listen(lst, 1);
  getsockname(lst, (struct sockaddr *)&a, &al);
  cli = socket(AF_INET, SOCK_STREAM, 0);
  connect(cli, (struct sockaddr *)&a, sizeof a);
  conn = accept(lst, NULL, NULL);
  if ((pid = fork()) == 0) {            /* the other worker: send it back */
    close(sp[0]);
    for (int k = 0; k < moves / 2; k++) pass(sp[1], take(sp[1]));
    _exit(0);
  }
  close(sp[1]);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int k = 0; k < moves / 2; k++) {
    pass(sp[0], conn);
    conn = take(sp[0]);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  waitpid(pid, NULL, 0);
  if (write(conn, "x", 1) != 1 || read(cli, &a, 1) != 1) {
    fprintf(stderr, "handoff: the connection did not survive\n");
    return 1;
  }
  printf("%.2f us/move (SCM_RIGHTS, blocking recvmsg, %d moves)\n",
         ((double)(t1.tv_sec - t0.tv_sec) * 1e9
          + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / (moves / 2 * 2), moves);
  return 0;
}

/*
 * noring: run a command with io_uring_setup blocked by a seccomp filter,
 * the way container runtimes block it.  Lets the suite test the setup
 * error messages without touching the system-wide sysctl.
 *
 *   noring EPERM|ENOSYS command [args...]
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main (int argc, char **argv) {
  int err;
  if (argc < 3) {
    fprintf(stderr, "usage: noring EPERM|ENOSYS command [args...]\n");
    return 2;
  }
  err = strcmp(argv[1], "ENOSYS") == 0 ? ENOSYS : EPERM;
  struct sock_filter filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { sizeof filter / sizeof filter[0], filter };
  /* no root needed: no_new_privs lets any process install a filter */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("noring: seccomp");
    return 2;
  }
  execvp(argv[2], argv + 2);
  perror("noring: exec");
  return 127;
}

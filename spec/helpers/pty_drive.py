#!/usr/bin/env python3
"""Drive a program on a pseudo-terminal as a user would, without guessing
delays: each step waits until the output shows what the user would wait
for (a prompt) before typing.

  pty_drive.py TIMEOUT CMD [ARG...] < steps

steps: one per line, "expect TEXT" (wait until TEXT appears in the output
after the previous expect), "send TEXT" (type TEXT), "sleep SECONDS";
TEXT may hold \\r, \\n, \\x03 escapes.  Prints the whole transcript and exits
with the program's exit status (128 + signal if it was killed; 124 when
TIMEOUT seconds pass first).
"""
import os, pty, select, signal, sys, time

def main():
    timeout = float(sys.argv[1])
    argv = sys.argv[2:]
    steps = [l.rstrip("\n").split(" ", 1) for l in sys.stdin if l.strip()]
    deadline = time.monotonic() + timeout
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = bytearray()
    seen = 0                      # expects match after this offset

    def pump(wait):
        try:
            r, _, _ = select.select([fd], [], [], wait)
            if r:
                data = os.read(fd, 4096)
                if not data:
                    return False
                out.extend(data)
        except OSError:           # EIO: the child closed the terminal
            return False
        return True

    def timed_out():
        sys.stdout.write(out.decode(errors="replace"))
        sys.stdout.write("\n[pty_drive: timed out]\n")
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.exit(124)

    for kind, _, arg in ((s[0], None, s[1] if len(s) > 1 else "") for s in steps):
        if kind == "expect":
            want = arg.encode().decode("unicode_escape").encode("latin-1")
            while out.find(want, seen) < 0:
                if time.monotonic() > deadline or not pump(0.05) and out.find(want, seen) < 0:
                    timed_out()
            seen = out.find(want, seen) + len(want)
        elif kind == "send":
            os.write(fd, arg.encode().decode("unicode_escape").encode("latin-1"))
        elif kind == "sleep":
            end = time.monotonic() + float(arg)
            while time.monotonic() < end:
                pump(0.05)
    while pump(0.05):             # drain until the child closes the terminal
        if time.monotonic() > deadline:
            timed_out()
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
             else 128 + os.WTERMSIG(status))

main()

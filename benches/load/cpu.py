#!/usr/bin/env python3
"""CPU time of process groups, for the load benchmark (benches/load/run.sh).

    cpu.py NAME=PID[,PID...] ...

prints one line `NAME=TICKS ... busy=TICKS all=TICKS`: for each NAME the
user + system clock ticks (1/CLK_TCK s) of the processes given and all
their descendants, including the exited descendants they reaped (a
PostgreSQL cluster given by its launcher's PID counts the postmaster and
every backend); `busy` and `all` are the machine's non-idle and total
ticks from /proc/stat (all CPUs). Run it before and after a measured
window and subtract.
"""
import os
import sys


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rfind(")") + 2:].split()
    # after the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def main():
    children = {}
    ticks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat(entry)
            if st:
                children.setdefault(st[0], []).append(int(entry))
                ticks[int(entry)] = st[1]
    out = []
    for arg in sys.argv[1:]:
        name, pids = arg.split("=", 1)
        total, stack, seen = 0, [int(p) for p in pids.split(",") if p], set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += ticks.get(pid, 0)
            stack.extend(children.get(pid, []))
        out.append(f"{name}={total}")
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)
    out.append(f"busy={sum(cpu) - idle}")
    out.append(f"all={sum(cpu)}")
    print(" ".join(out))


if __name__ == "__main__":
    main()

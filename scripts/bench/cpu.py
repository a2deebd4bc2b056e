#!/usr/bin/env python3
"""CPU seconds each process spent while a command ran: `cpu.py OUT -- CMD...`

Runs CMD (its output passes through), and writes to OUT a JSON object of
CPU seconds (user + system) per process name over the run: every process
on the machine, summed by name (PostgreSQL's backends as one), and CMD
itself as "client". `just bench` divides them by the requests answered:
where each request's CPU goes, the profile of a figure bounded by two
co-located cores. Processes that ended during the run are not counted
(except CMD).
"""
import json
import os
import resource
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")


def snapshot():
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if name.startswith("postgres"):
            name = "postgres"
        elif name.startswith("kworker"):
            name = "kernel workers"
        ticks[(pid, name)] = int(fields[11]) + int(fields[12])
    return ticks


def main():
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not cmd:
        sys.exit("usage: cpu.py OUT -- CMD...")
    before = snapshot()
    code = subprocess.call(cmd)
    after = snapshot()
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = {}
    for (pid, name), t in after.items():
        d = (t - before.get((pid, name), 0)) / HZ
        if d > 0:
            spent[name] = spent.get(name, 0.0) + d
    spent["client"] = child.ru_utime + child.ru_stime
    with open(out, "w") as f:
        json.dump(spent, f)
    sys.exit(code)


main()

#!/usr/bin/env python3
"""Benchmark the deploy on a lab fleet against the SSH floor measured in the same run.

    sudo .venv/bin/python bench/bench.py --hosts 30 --repeat 3 [--scale 100]

Floor: `pyinfra inventory.py exec -- true` (connect to every host, run one command).
Reference: `bench/least_deploy.py`, what pyinfra itself spends on a deploy shaped like
ours (a `true` fact and two no-op operations per host).
Phases: first rollout from pristine hosts (commit-confirmed, the default, and with
`firewall_confirm_timeout=0`), no-op run on the converged fleet, and `--dry --diff` on it.
Each phase is timed several times (median), its commands per host are counted from
what crossed SSH (the lab's sshd logs every command it runs),
the pyinfra process's peak RSS and CPU time are read from the kernel (wait4), and the hosts' CPU
time from their own accounting (every process in the hosts' PID namespaces, the
children they reaped included). Prints one Markdown table of ratios to the floor. A
benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_LAB = ROOT / ".lab-bench"
os.environ.update(LAB_DIR=str(BENCH_LAB), LAB_PREFIX="fxb", LAB_SUBNET="10.213.79")
sys.path.insert(0, str(ROOT))
from lab.access import COMMAND_LOG  # noqa: E402
from lab.common import preflight  # noqa: E402
from lab.config import host_names  # noqa: E402
from lab.fleet import down, up  # noqa: E402
from lab.netns_hosts import exec_in, holder_pid, reset_ufw  # noqa: E402

PYINFRA = [sys.executable, "-m", "pyinfra"]
SETTLE = 1.0  # seconds of quiet before every timed run, the same for every phase
DEPLOY = str(ROOT / "examples" / "deploy.py")
LEAST = str(ROOT / "bench" / "least_deploy.py")  # pyinfra's own cost of a deploy like ours


def timed(args: list[str]) -> tuple[float, int, float, str]:
    """Run pyinfra in the lab dir: (seconds, peak RSS in MiB, its CPU seconds, output)."""
    start = time.perf_counter()
    proc = subprocess.Popen(PYINFRA + args, cwd=BENCH_LAB, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench: pyinfra {' '.join(args)} failed:\n{out[-3000:]}")
    return elapsed, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime, out


def each_host(names: list[str], func) -> list:
    with ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(func, names))


def clear_command_logs(names: list[str]) -> None:
    each_host(names, lambda n: exec_in(n, "sh", "-c", f": > {COMMAND_LOG}"))


def commands_per_host(names: list[str]) -> tuple[int, int]:
    counts = each_host(names, lambda n: len(exec_in(
        n, "sh", "-c", f"cat {COMMAND_LOG} 2>/dev/null || true").stdout.splitlines()))
    return min(counts), max(counts)


def host_cpu_seconds(names: list[str]) -> float:
    """CPU seconds the hosts' processes have used: utime+stime+cutime+cstime of every
    live process in their PID namespaces (a process that ended counts in its reaper's)."""
    spaces = set()
    for name in names:
        pid = holder_pid(name)
        if pid is not None:
            spaces.add(os.readlink(f"/proc/{pid}/ns/pid"))
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") not in spaces:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def reset_to_pristine(names: list[str]) -> None:
    """Every host back to a fresh ufw install, no fragment and none of this deploy's
    state, the host program included (outside the timing)."""
    def reset(name: str) -> None:
        reset_ufw(name)
        exec_in(name, "sh", "-c", "rm -f /etc/proftpd/conf.d/froxlor-fleet-passive-ports.conf; "
                "rm -rf /var/lib/froxlor-fleet/* /var/lib/froxlor-fleet/.[!.]*; "
                "/etc/init.d/proftpd restart >/dev/null")

    each_host(names, reset)


def measure(n: int, repeat: int) -> dict[str, dict]:
    up(n)
    names = host_names(n)
    phases: dict[str, dict] = {}

    def run_phase(name: str, args: list[str], before=None) -> None:
        times, rss, cmds, cpu, control = [], [], None, [], []
        for _ in range(repeat):
            if before:
                before(names)
            clear_command_logs(names)
            time.sleep(SETTLE)  # let set-up work (resets, log clearing) die down
            cpu_before = host_cpu_seconds(names)
            seconds, peak, control_cpu, out = timed(args)
            time.sleep(SETTLE)  # detached work (a confirmed timer's exit) has ended
            cpu.append((host_cpu_seconds(names) - cpu_before) / len(names))
            times.append(seconds)
            rss.append(peak)
            control.append(control_cpu)
            cmds = commands_per_host(names)
        phases[name] = {"median": statistics.median(times), "runs": times,
                        "rss": max(rss), "commands": cmds, "last": out,
                        "host_cpu": statistics.median(cpu),
                        "control_cpu": statistics.median(control)}

    run_phase("floor (exec -- true)", ["-y", "inventory.py", "exec", "--", "true"])
    # a reference, not ours: one `true` fact and two no-op operations (least_deploy.py)
    run_phase("pyinfra's least deploy (reference)", ["-y", "inventory.py", LEAST])
    run_phase("first rollout", ["-y", "inventory.py", DEPLOY], before=reset_to_pristine)
    # commit-confirmed (the default) costs one new SSH connection per changed host
    run_phase("first rollout, confirm off", ["-y", "inventory.py", DEPLOY,
                                             "--data", "firewall_confirm_timeout=0"],
              before=reset_to_pristine)
    run_phase("no-op run", ["-y", "inventory.py", DEPLOY])
    run_phase("dry run --diff", ["inventory.py", DEPLOY, "--dry", "--diff"])
    noop = phases["no-op run"]["last"]
    phases["no-op run"]["changes"] = "Success" in noop and not _all_no_change(noop)
    return phases


def _all_no_change(output: str) -> bool:
    rows = [line for line in output.split("--> Results:")[-1].splitlines()
            if "froxlor firewall |" in line]
    return bool(rows) and all(row.split()[-3:-1] == ["-", "-"] for row in rows)


def table(n: int, phases: dict[str, dict]) -> str:
    floor = phases["floor (exec -- true)"]["median"]
    lines = [f"N = {n} hosts, median of {len(phases['no-op run']['runs'])} runs each",
             "", "| phase | median s | × floor | commands/host | host CPU s/host "
             "| pyinfra CPU s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for name, p in phases.items():
        lo, hi = p["commands"]
        cmds = f"{lo}" if lo == hi else f"{lo}–{hi}"
        lines.append(f"| {name} | {p['median']:.2f} | {p['median'] / floor:.2f} | {cmds} "
                     f"| {p['host_cpu']:.3f} | {p['control_cpu']:.2f} | {p['rss']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=0, help="also measure at this N (e.g. 100)")
    parser.add_argument("--keep", action="store_true", help="leave the bench lab up")
    args = parser.parse_args()
    preflight()
    results = {}
    try:
        for n in [args.hosts] + ([args.scale] if args.scale else []):
            results[n] = measure(n, args.repeat)
            print(table(n, results[n]) + "\n", flush=True)
            assert not results[n]["no-op run"]["changes"], "the no-op run changed something"
    finally:
        if not args.keep:
            down(quiet=True)
    if args.scale:
        small, big = results[args.hosts], results[args.scale]
        growth = big["no-op run"]["median"] / small["no-op run"]["median"]
        print(f"no-op time {args.hosts} -> {args.scale} hosts: × {growth:.2f} "
              f"(linear would be × {args.scale / args.hosts:.2f}); "
              f"peak RSS at {args.scale}: {big['no-op run']['rss']} MiB (no-op), "
              f"{big['first rollout']['rss']} MiB (rollout)")


if __name__ == "__main__":
    main()

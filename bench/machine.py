"""Machine facts and CPU accounting for benchmark reports (the machine is shared: say so)."""

from __future__ import annotations

import os
import platform
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phe


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "nproc": usable_cores(),
        "cpu_model": cpu,
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "os": f"{os_name} (kernel {platform.release()}, {platform.machine()})",
        "phe_gmpy2": bool(getattr(phe.util, "HAVE_GMP", False)),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine skews every figure here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy CPU time and the CPU time of the given processes, in seconds."""

    machine_busy_s: float
    ours_s: float
    #: Each process's own CPU time, by pid.
    per_pid_s: dict[int, float] = field(default_factory=dict)

    @classmethod
    def take(cls, pids: list[int]) -> CpuSnapshot | None:
        try:
            tick = os.sysconf("SC_CLK_TCK")
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            busy = sum(values[:8]) - idle  # user..steal; guest time is already in user
            per_pid = {}
            for pid in pids:
                fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                per_pid[pid] = (int(fields_[11]) + int(fields_[12])) / tick  # utime + stime
        except (OSError, ValueError, IndexError):
            return None
        return cls(machine_busy_s=busy / tick, ours_s=sum(per_pid.values()),
                   per_pid_s=per_pid)


def cpu_ms_per_unit(before: CpuSnapshot | None, after: CpuSnapshot | None,
                    names: dict[int, str], units: int) -> dict[str, float] | None:
    """CPU milliseconds each named process spent per unit of work (e.g. per evaluation)."""
    if before is None or after is None or units <= 0:
        return None
    return {name: round((after.per_pid_s.get(pid, 0.0) - before.per_pid_s.get(pid, 0.0))
                        * 1000 / units, 2) for pid, name in names.items()}


def cpu_usage(
    before: CpuSnapshot | None, after: CpuSnapshot | None, elapsed: float, cores: int
) -> dict[str, float] | None:
    """How busy the machine was during the load phase, and how much of that was not us."""
    if before is None or after is None or elapsed <= 0:
        return None
    machine = after.machine_busy_s - before.machine_busy_s
    ours = after.ours_s - before.ours_s
    return {
        "machine_busy_cores": round(machine / elapsed, 3),
        "alliance_and_bench_cores": round(ours / elapsed, 3),
        "other_processes_cores": round(max(0.0, machine - ours) / elapsed, 3),
        "cores": cores,
    }


def peak_rss_mib(pid: int) -> float | None:
    """A process's peak resident set size (VmHWM), MiB; None where /proc has no answer."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


BENCH_VENVS = Path(__file__).resolve().parent.parent / ".bench"


def bench_python(name: str, package: str, explicit: str | None, status: Any) -> Path:
    """A Python with ``package`` installed in its own environment (``.bench/<name>``, created
    with pip on first use): peer libraries whose dependencies cannot live beside ours.
    ``explicit`` overrides it; ``status`` is a rich ``Console.status``."""
    if explicit:
        return Path(explicit)
    python = BENCH_VENVS / name / "bin" / "python"
    if not python.exists():
        with status(f"creating .bench/{name} with {package} (bench-only, once)…"):
            venv.create(BENCH_VENVS / name, with_pip=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", package], check=True)
    return python

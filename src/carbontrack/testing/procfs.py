"""A fake ``/proc`` (and a bare powercap directory) for the ``estimate`` backend.

``FakeProcFS`` writes ``cpuinfo``, ``stat``, ``meminfo`` and per-process ``stat`` files in the
kernel's formats; tests move CPU time forward with ``cpu_time`` and ``process_time``. Point
carbontrack at it with the variables in ``env()`` (``CARBONTRACK_PROC_ROOT`` and
``CARBONTRACK_POWERCAP_ROOT``). ``fake_sysctl`` writes a ``sysctl`` executable for the macOS path.
"""

from __future__ import annotations

import stat as _stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

__all__ = ["FakeProcFS", "FakeProcess", "fake_sysctl"]


@attrs.define
class FakeProcess:
    """One process: parent, CPU ticks (own and reaped children's) and resident pages."""

    pid: int
    ppid: int
    comm: str = "python"
    utime: int = 0
    stime: int = 0
    cutime: int = 0
    cstime: int = 0
    rss_pages: int = 0


class FakeProcFS:
    """A ``/proc`` tree under ``root / "proc"`` and a ``/sys`` under ``root / "sys"``.

    ``model`` is the ``model name`` line ("" writes none, as on ARM); ``sockets`` x
    ``threads_per_socket`` processors are listed with their ``physical id``. ``rapl_zones``
    creates those zone directories under ``sys/class/powercap`` with a ``name`` file only (no
    ``energy_uj``: present, yet nothing to read). ``masked_rapl_zones`` creates dangling links,
    as containers that mask ``/sys/devices/virtual/powercap`` show. ``children_files=False``
    leaves out ``task/*/children``, as kernels without ``CONFIG_PROC_CHILDREN`` do.
    """

    def __init__(
        self,
        root: Path,
        *,
        model: str = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
        sockets: int = 1,
        threads_per_socket: int = 4,
        hypervisor: bool = False,
        mem_total_kb: int = 16 * 1024 * 1024,
        rapl_zones: Sequence[str] = (),
        masked_rapl_zones: Sequence[str] = (),
        children_files: bool = True,
        write_cpuinfo: bool = True,
    ) -> None:
        self.proc = root / "proc"
        self.sys = root / "sys"
        self.proc.mkdir(parents=True, exist_ok=True)
        (self.sys / "class" / "powercap").mkdir(parents=True, exist_ok=True)
        for index, zone in enumerate(rapl_zones):
            path = self.sys / "class" / "powercap" / zone
            path.mkdir(exist_ok=True)
            (path / "name").write_text(f"package-{index}\n", encoding="ascii")
        for zone in masked_rapl_zones:
            link = self.sys / "class" / "powercap" / zone
            link.symlink_to(self.sys / "devices" / "virtual" / "powercap" / "intel-rapl" / zone)
        self.children_files = children_files
        self.busy = 0
        self.idle = 0
        self.steal = 0
        self.processes: dict[int, FakeProcess] = {}
        if write_cpuinfo:
            self._write_cpuinfo(model, sockets, threads_per_socket, hypervisor)
        (self.proc / "meminfo").write_text(
            f"MemTotal:       {mem_total_kb} kB\nMemFree:         1024 kB\n", encoding="ascii"
        )
        self._write_stat()

    def env(self) -> Mapping[str, str]:
        """Environment variables that point carbontrack at this tree."""
        return {
            "CARBONTRACK_PROC_ROOT": str(self.proc),
            "CARBONTRACK_POWERCAP_ROOT": str(self.sys / "class" / "powercap"),
        }

    def _write_cpuinfo(self, model: str, sockets: int, per_socket: int, virtual: bool) -> None:
        flags = "fpu vme de pse tsc msr pae mce cx8 apic sep" + (" hypervisor" if virtual else "")
        blocks = []
        n = 0
        for socket in range(sockets):
            for core in range(per_socket):
                lines = [f"processor\t: {n}", "vendor_id\t: GenuineIntel"]
                if model:
                    lines.append(f"model name\t: {model}")
                lines += [f"physical id\t: {socket}", f"core id\t\t: {core}", f"flags\t\t: {flags}"]
                blocks.append("\n".join(lines))
                n += 1
        (self.proc / "cpuinfo").write_text("\n\n".join(blocks) + "\n\n", encoding="ascii")

    def _write_stat(self) -> None:
        # user nice system idle iowait irq softirq steal guest guest_nice; busy goes to user.
        line = f"cpu  {self.busy} 0 0 {self.idle} 0 0 0 {self.steal} 0 0"
        text = f"{line}\ncpu0 {self.busy} 0 0 {self.idle} 0 0 0 {self.steal} 0 0\nintr 0\n"
        (self.proc / "stat").write_text(text, encoding="ascii")

    def cpu_time(self, *, busy: int = 0, idle: int = 0, steal: int = 0) -> None:
        """Add clock ticks (summed over all CPUs) to the machine's busy, idle and steal time."""
        self.busy += busy
        self.idle += idle
        self.steal += steal
        self._write_stat()

    def add_process(
        self, pid: int, ppid: int = 1, *, utime: int = 0, stime: int = 0, rss_pages: int = 0
    ) -> FakeProcess:
        """Start a process (its ticks are not added to the machine's: call ``cpu_time``)."""
        proc = FakeProcess(pid, ppid, utime=utime, stime=stime, rss_pages=rss_pages)
        self.processes[pid] = proc
        self._write_process(proc)
        self._write_children()
        return proc

    def process_time(self, pid: int, *, utime: int = 0, stime: int = 0) -> None:
        """Add CPU ticks to one process."""
        proc = self.processes[pid]
        proc.utime += utime
        proc.stime += stime
        self._write_process(proc)

    def exit_process(self, pid: int, *, reaped: bool = True) -> None:
        """End a process; when ``reaped`` its parent's cutime/cstime take its ticks, as in Linux."""
        proc = self.processes.pop(pid)
        parent = self.processes.get(proc.ppid)
        if reaped and parent is not None:
            parent.cutime += proc.utime + proc.cutime
            parent.cstime += proc.stime + proc.cstime
            self._write_process(parent)
        directory = self.proc / str(pid)
        for path in sorted(directory.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        directory.rmdir()
        self._write_children()

    def _write_process(self, p: FakeProcess) -> None:
        directory = self.proc / str(p.pid)
        (directory / "task" / str(p.pid)).mkdir(parents=True, exist_ok=True)
        fields = [
            "S", p.ppid, p.pid, p.pid, 0, -1, 4194304, 100, 0, 0, 0,
            p.utime, p.stime, p.cutime, p.cstime, 20, 0, 1, 0, 12345, 1 << 30, p.rss_pages,
        ]  # fmt: skip
        text = f"{p.pid} ({p.comm}) " + " ".join(str(f) for f in fields) + " 0 0 0\n"
        (directory / "stat").write_text(text, encoding="ascii")

    def _write_children(self) -> None:
        for pid in self.processes:
            path = self.proc / str(pid) / "task" / str(pid) / "children"
            if not self.children_files:
                path.unlink(missing_ok=True)
                continue
            kids = [str(c.pid) for c in self.processes.values() if c.ppid == pid]
            path.write_text("".join(k + " " for k in kids), encoding="ascii")


def fake_sysctl(directory: Path, values: Mapping[str, str]) -> Path:
    """Write an executable ``sysctl`` into ``directory`` that answers ``sysctl -n KEY``.

    Put ``directory`` first on ``PATH``; unknown keys exit 1 as the real one does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cases = "".join(f"  {k}) printf '%s\\n' '{v}';;\n" for k, v in values.items())
    script = f'#!/bin/sh\n[ "$1" = "-n" ] && shift\ncase "$1" in\n{cases}  *) exit 1;;\nesac\n'
    path = directory / "sysctl"
    path.write_text(script, encoding="ascii")
    path.chmod(path.stat().st_mode | _stat.S_IXUSR | _stat.S_IXGRP | _stat.S_IXOTH)
    return path

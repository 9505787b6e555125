"""What both lab kinds' test fixtures do the same way: run pyinfra in the lab's folder
(its inventory.py and group_data/), edit group data, read `ufw show added`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy.py"  # the example fleet's deploy: what operators run


class LabDriver:
    """Base of ``conftest.Lab`` (namespace hosts) and ``systemd_lab.SystemdLab``."""

    lab_dir: Path

    def sh(self, name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
        raise NotImplementedError

    def pyinfra(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, "-m", "pyinfra", *args],
            cwd=self.lab_dir, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200"))
        res.out = res.stdout + res.stderr  # type: ignore[attr-defined]
        return res

    def deploy(self, *extra: str) -> subprocess.CompletedProcess:
        return self.pyinfra("inventory.py", str(DEPLOY), *extra)

    def write_group_data(self, name: str, text: str) -> None:
        (self.lab_dir / "group_data" / f"{name}.py").write_text(text)

    def group_data(self, name: str) -> str:
        return (self.lab_dir / "group_data" / f"{name}.py").read_text()

    def show_added(self, name: str) -> list[str]:
        return self.sh(name, "ufw show added").stdout.splitlines()[1:]

    def live_chains(self, name: str) -> dict[str, str]:
        """``iptables-save``/``ip6tables-save`` of the host without counters and comments:
        what the kernel filters with, comparable between hosts and runs."""
        view = {}
        for tool in ("iptables-save", "ip6tables-save"):
            chains = self.sh(name, tool).stdout
            view[tool] = "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in chains.splitlines()
                                   if not line.startswith("#"))
        return view

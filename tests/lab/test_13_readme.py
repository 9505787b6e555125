"""A newcomer following only the README (issue 21): the README's own commands, read
from README.md and run as written — a virtualenv with the package next to pyinfra
(from this checkout, as the README says for one), `froxlor-fleet init`, the example
pointed at the lab's hosts, then the Quick start's preview and audit — in a fresh HOME,
with nothing of this repository's .venv on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from conftest import ROOT, TEST_LAB

README = (ROOT / "README.md").read_text()


def code_block_after(marker: str) -> list[str]:
    """The first indented (4-space) code block after the line holding ``marker``:
    its commands, comments after `#` dropped."""
    lines = README[README.index(marker):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(re.sub(r"\s+#.*$", "", line.strip()))
    return block


def readme_commands() -> tuple[list[str], str, list[str]]:
    venv = code_block_after("or a virtualenv (from a checkout")
    init = re.search(r"`(froxlor-fleet init \w+)`", README).group(1)
    quick = code_block_after("Then, from that folder:")
    return venv, init, quick


def test_the_readme_commands_work_as_written(lab, tmp_path) -> None:
    venv, init, quick = readme_commands()
    assert venv[0].startswith("python3 -m venv ~/froxlor-venv") and "pip install froxlor-fleet" in venv[0]
    assert venv[1] == ". ~/froxlor-venv/bin/activate"
    assert quick == ["pyinfra inventory.py deploy.py --dry --diff",
                     "pyinfra inventory.py deploy.py -y",
                     "froxlor-fleet audit inventory.py"]
    # the package is not published yet: "from a checkout, `pip install .` instead of the
    # name" (a copy, so the build leaves nothing in this checkout)
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".venv", ".lab*", ".git", "__pycache__", "*.egg-info", "build", "dist"))
    install = venv[0].replace("pip install froxlor-fleet", f"pip install -q {checkout}")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
           "LANG": "C.UTF-8", "COLUMNS": "200"}
    if "PIP_INDEX_URL" in os.environ:
        env["PIP_INDEX_URL"] = os.environ["PIP_INDEX_URL"]

    def sh(script: str, cwd=tmp_path, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f"{venv[1]} && {script}"], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)

    res = subprocess.run(["bash", "-c", install], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    res = sh("command -v pyinfra froxlor-fleet && froxlor-fleet --version")
    assert res.returncode == 0 and str(home / "froxlor-venv/bin/pyinfra") in res.stdout, res.stderr
    assert sh(init).returncode == 0
    fleet = tmp_path / init.split()[-1]
    # "Replace the example.net names with your servers": the lab's hosts, in the same
    # groups, reached with the lab's key
    (fleet / "inventory.py").write_text((TEST_LAB / "inventory.py").read_text())
    ssh = [line for line in (TEST_LAB / "group_data/all.py").read_text().splitlines()
           if line.startswith(("ssh_key", "ssh_known_hosts_file", "ssh_strict"))]
    with (fleet / "group_data/all.py").open("a") as f:
        f.write("\n".join(ssh) + "\n")
    before = {name: sorted(lab.show_added(name)) for name in lab.hosts}
    res = sh(quick[0], cwd=fleet)  # the preview
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out
    # the example's data is not the lab's: the preview shows what it would change...
    assert re.search(r"^\s+[+~-] (allow|limit|deny|reject) ", out, re.M), out
    for name in lab.hosts:
        assert f"[{name}]" in out, name
    # ...and changes nothing
    assert {name: sorted(lab.show_added(name)) for name in lab.hosts} == before
    res = sh(quick[2], cwd=fleet)  # the audit: read-only, the same verdict as the preview
    out = res.stdout + res.stderr
    assert res.returncode == 1, out  # drift: the lab does not run the example's data
    assert "Traceback" not in out and f"{len(lab.hosts)} hosts" in out, out

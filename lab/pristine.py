"""The control side's packages, and /etc files as the packages ship them (ufw,
proftpd): what every namespace host starts from."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lab.common import run
from lab.config import LAB_DIR

PACKAGES = ["iproute2", "openssh-server", "openssh-client", "ufw", "proftpd-basic",
            "iptables", "util-linux", "procps", "sudo", "openssl"]


def ensure_packages() -> None:
    needed = [p for p in PACKAGES if run("dpkg-query", "-W", "-f=${Status}", p,
                                         check=False).stdout.strip() != "install ok installed"]
    if not needed:
        return
    print(f"lab: installing {' '.join(needed)}", flush=True)
    # policy-rc.d stops the packages from starting their daemons on *this* machine.
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    if not had_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", *needed, env=env)
    finally:
        if not had_policy:
            policy.unlink()


def pristine_debs() -> Path:
    """The ufw and proftpd-core .debs of the installed versions (cache, else download)."""
    debs = LAB_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in ("ufw", "proftpd-core"):
        version = run("dpkg-query", "-W", "-f=${Version}", pkg).stdout.strip()
        if list(debs.glob(f"{pkg}_*.deb")):
            continue
        cached = [p for p in Path("/var/cache/apt/archives").glob(f"{pkg}_*.deb")
                  if run("dpkg-deb", "-f", str(p), "Version").stdout.strip() == version]
        if cached:
            shutil.copy(cached[0], debs)
        else:
            run("apt-get", "download", f"{pkg}={version}", cwd=debs)
    return debs


def pristine_tree() -> Path:
    """/etc files as the packages ship them (what a fresh install leaves)."""
    tree = LAB_DIR / "pristine"
    if (tree / "done").exists():
        return tree
    debs = pristine_debs()
    tmp = Path(tempfile.mkdtemp(dir=LAB_DIR))
    for deb in debs.glob("*.deb"):
        run("dpkg-deb", "-x", str(deb), str(tmp))
    tree.mkdir(exist_ok=True)
    ufw = tree / "etc-ufw"
    shutil.copytree(tmp / "etc/ufw", ufw, dirs_exist_ok=True)
    for f in (tmp / "usr/share/ufw/iptables").iterdir():  # ufw's postinst does this
        shutil.copy(f, ufw / f.name)
    for f in ("ufw.conf", "before.init", "after.init"):
        shutil.copy(tmp / "usr/share/ufw" / f, ufw / f)
    for f in ufw.glob("*.rules"):
        f.chmod(0o640)
    shutil.copy(tmp / "etc/default/ufw", tree / "default-ufw")
    proftpd = tree / "etc-proftpd"
    shutil.copytree(tmp / "usr/share/proftpd/templates", proftpd, dirs_exist_ok=True)
    (proftpd / "conf.d").mkdir(exist_ok=True)
    for f in ("welcome.msg",):
        (proftpd / f).unlink(missing_ok=True)
    shutil.rmtree(tmp)
    (tree / "done").write_text("")
    return tree

#!/usr/bin/env python3
"""Pristine Debian root filesystems for the systemd lab hosts (run as root).

    python3 lab/rootfs.py build bookworm [--ftpd proftpd|pureftpd] [--tenants] [--froxlor]
                                                                     # build (or reuse) one
    python3 lab/rootfs.py list                                       # what the cache holds

One tree per release and package list, built once with ``debootstrap --variant=minbase``
from the configured Debian mirror and cached between runs under
``/var/cache/froxlor-fleet-lab/rootfs/<release>-<hash>`` (``LAB_ROOTFS_CACHE`` to move
it). The hash covers the release, the mirror and the package list, so a changed list
builds a new tree; a changed set-up (SETUP_VERSION) is applied again to the cached tree.
Each lab host boots an overlay over the tree and never writes to it.

What is set up inside, once, the same for every host of that tree: systemd as init with
``ssh``, ``ufw``, the FTP server and ``lab-net`` (the host's addresses, from
``/etc/lab-net.conf`` that each host gets in its overlay) enabled; the non-root sudo
user ``fleet``; key-only sshd; no SSH host keys and an empty machine-id (each host gets
its own); apt pointing only at the lab's package repository (``lab-control`` is the
control side in each host's /etc/hosts). The .debs debootstrap downloaded move out of
the tree into ``repo/`` beside it, with a Packages and Release index: the lab serves it
so ``apt-get install ufw`` on a host really installs from a repository. A tenants tree
(``--tenants``) adds the firewall's other tenants: fail2ban, nftables on trixie, and
iptables-persistent and Docker in its repository only. A froxlor tree (``--froxlor``)
adds MariaDB (server and client), installed after debootstrap with daemons kept from
starting (policy-rc.d), mariadb.service enabled: froxlor's database lives there (each
lab host seeds its own at first boot, lab/systemd_hosts.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("LAB_ROOTFS_CACHE", "/var/cache/froxlor-fleet-lab/rootfs"))
RELEASES = ("bullseye", "bookworm", "trixie")
FTPDS = ("proftpd", "pureftpd")
REPO_PORT = 8079  # the lab's package repository, on each lab's own control address
SUDO_USER = "fleet"
# Bump when the set-up below changes in a way a cached tree must not miss.
SETUP_VERSION = "5"

BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "ufw", "iproute2",
                 "iptables", "kmod", "python3", "sudo", "procps"]


def ftp_packages(release: str, ftpd: str) -> list[str]:
    """The FTP server froxlor sets up: ProFTPd (package proftpd-core on trixie, where
    proftpd-basic is only a virtual name, with mod_tls from proftpd-mod-crypto), or
    pure-ftpd with froxlor's MySQL backend."""
    if ftpd == "pureftpd":
        if release == "trixie":
            raise ValueError("froxlor offers no pure-ftpd on Debian 13 (trixie)")
        return ["pure-ftpd-mysql", "openssl"]
    # mod_tls (froxlor requires FTPS) is in proftpd-mod-crypto on trixie
    return ["proftpd-core", "proftpd-mod-crypto"] if release == "trixie" else ["proftpd-basic"]


def tenant_packages(release: str) -> list[str]:
    """The firewall's other tenants on a froxlor host, as Debian ships them: fail2ban
    (its sshd jail reads the journal: python3-systemd) and, on trixie, where fail2ban's
    default banaction is nftables, the nftables package (nftables.service stays disabled,
    as Debian installs it)."""
    return ["fail2ban", "python3-systemd"] + (["nftables"] if release == "trixie" else [])


# froxlor's database server and its client (the client: discover reads froxlor's
# settings with it, as root over the unix socket). Installed after debootstrap, never
# with it: mariadb-server's postinst would start the server inside the build's chroot.
FROXLOR_PACKAGES = ["mariadb-server", "mariadb-client"]


# Downloaded (with what they depend on) into a tenants tree's repository, never
# installed there: a test installs one on a host the way an admin would (ufw's package
# Breaks iptables-persistent; Docker only needs to be installed to be seen).
REPO_ONLY_TENANTS = ["iptables-persistent", "docker.io"]


def packages(release: str, ftpd: str, tenants: bool = False) -> list[str]:
    extra = tenant_packages(release) if tenants else []
    return sorted(BASE_PACKAGES + ftp_packages(release, ftpd) + extra)


def ftp_unit(ftpd: str) -> str:
    return "pure-ftpd-mysql" if ftpd == "pureftpd" else "proftpd"


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org unless configured)."""
    if os.environ.get("LAB_MIRROR"):
        return os.environ["LAB_MIRROR"].rstrip("/")
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            urls = [w for w in words if w.startswith(("http://", "https://"))]
            if urls and "security" not in urls[0] and not line.lstrip().startswith("#"):
                return urls[0].rstrip("/")
    return "http://deb.debian.org/debian"


def key(release: str, ftpd: str, tenants: bool = False, froxlor: bool = False) -> str:
    repo_only = REPO_ONLY_TENANTS if tenants else []
    # a tree without froxlor hashes as before: the trees already cached stay valid
    installed = ["after-debootstrap:", *FROXLOR_PACKAGES] if froxlor else []
    digest = hashlib.sha256("\n".join(
        [release, mirror(), *packages(release, ftpd, tenants), *repo_only, *installed]
    ).encode()).hexdigest()
    return f"{release}-{digest[:12]}"


def tree_dir(release: str, ftpd: str, tenants: bool = False, froxlor: bool = False) -> Path:
    return CACHE / key(release, ftpd, tenants, froxlor)


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(args, text=True, capture_output=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {(res.stderr or res.stdout).strip()[-2000:]}")
    return res


# Runs in the tree with chroot after debootstrap, and again when SETUP_VERSION changes
# (idempotent). $1 the tree's name (its path in the lab's repository), $2 FTP unit, $3
# sudo user, $4 repository port.
SETUP = r"""
set -eu
repo=$1; ftp_unit=$2; user=$3; port=$4
# Each host gets its own host keys and machine-id in its overlay; dbus reads that id.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id; ln -s /etc/machine-id /var/lib/dbus/machine-id
# apt: only the lab's repository (lab-control is the control side, in each /etc/hosts).
rm -f /etc/apt/sources.list.d/*
echo "deb [trusted=yes] http://lab-control:$port/$repo ./" > /etc/apt/sources.list
rm -rf /var/lib/apt/lists/*; mkdir -p /var/lib/apt/lists/partial
# Key-only SSH (the key is made by the lab at run time, per host in its overlay).
mkdir -p /etc/ssh/sshd_config.d
printf '%s\n' "PasswordAuthentication no" "KbdInteractiveAuthentication no" "UseDNS no" \
  "MaxStartups 100" "HostKey /etc/ssh/ssh_host_ed25519_key" \
  > /etc/ssh/sshd_config.d/froxlor-fleet-lab.conf
id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
# Anonymous FTP's account (proftpd's package makes it; pure-ftpd's does not).
id -u ftp >/dev/null 2>&1 || useradd --system --home-dir /srv/ftp --no-create-home \
  --shell /usr/sbin/nologin ftp
mkdir -p /srv/ftp
echo "$user ALL=(ALL) NOPASSWD:ALL" > "/etc/sudoers.d/froxlor-fleet-lab"
chmod 0440 /etc/sudoers.d/froxlor-fleet-lab
# The host's addresses on the lab bridge, from its own /etc/lab-net.conf; no default route.
cat > /etc/systemd/system/lab-net.service <<'EOF'
[Unit]
Description=froxlor-fleet lab: addresses on the lab bridge (no default route)
DefaultDependencies=no
Before=network-pre.target ssh.service
Wants=network-pre.target
After=systemd-udevd.service

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=/etc/lab-net.conf
ExecStart=/sbin/ip link set lo up
ExecStart=/sbin/ip link set host0 up
ExecStart=/sbin/ip addr replace ${IPV4} dev host0
ExecStart=/sbin/ip -6 addr replace ${IPV6} dev host0 nodad

[Install]
WantedBy=multi-user.target
EOF
systemctl enable lab-net.service ssh.service ufw.service "$ftp_unit.service" >/dev/null 2>&1
# Nothing on a lab host may try to reach the internet, and boots stay short.
systemctl mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
  apt-daily-upgrade.service console-getty.service getty@.service e2scrub_reap.service \
  e2scrub_all.timer systemd-networkd-wait-online.service >/dev/null 2>&1
apt-get clean >/dev/null 2>&1 || true
"""


def build(release: str, ftpd: str = "proftpd", tenants: bool = False,
          froxlor: bool = False) -> Path:
    """The cached tree for release + FTP server (+ the firewall's other tenants, + froxlor's
    MariaDB): debootstrap once per package list, the set-up once per SETUP_VERSION (one
    build at a time; a second caller reuses it)."""
    if release not in RELEASES or ftpd not in FTPDS:
        raise ValueError(f"unknown release/ftpd {release}/{ftpd}")
    dest = tree_dir(release, ftpd, tenants, froxlor)
    if ready(dest):
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / ".done").exists():
            bootstrap(release, ftpd, dest, tenants, froxlor)
        if not ready(dest):
            set_up(dest, ftpd)
    return dest


def ready(dest: Path) -> bool:
    try:
        return (dest / ".setup").read_text() == SETUP_VERSION and (dest / ".done").exists()
    except OSError:
        return False


def bootstrap(release: str, ftpd: str, dest: Path, tenants: bool = False,
              froxlor: bool = False) -> None:
    """debootstrap minbase with the package list; its .debs move to repo/ (indexed),
    with REPO_ONLY_TENANTS downloaded beside them for a tenants tree, and MariaDB
    installed (install_froxlor_packages) for a froxlor tree."""
    tmp = CACHE / f".build-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    started = time.monotonic()
    print(f"rootfs: debootstrap {release} ({ftpd}) from {mirror()} -> {dest}", flush=True)
    root = tmp / "root"
    try:
        run("debootstrap", "--variant=minbase",
            f"--include={','.join(packages(release, ftpd, tenants))}",
            release, str(root), mirror() + "/")
        if tenants:  # from the tree's own apt sources (the mirror), before SETUP moves them
            run("chroot", str(root), "sh", "-c", "apt-get update -qq && for p in "
                + " ".join(REPO_ONLY_TENANTS) + "; do apt-get install -y -qq --download-only "
                "--no-install-recommends $p; done",
                env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin",
                         DEBIAN_FRONTEND="noninteractive"))
        if froxlor:
            install_froxlor_packages(root)
        repo = tmp / "repo"
        repo.mkdir()
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.rename(repo / deb.name)  # out of the tree: apt in a host must download them
        index_repo(repo)
        (tmp / "versions.txt").write_text(versions(root, ftpd))
        (tmp / "packages.txt").write_text("\n".join(
            packages(release, ftpd, tenants) + (FROXLOR_PACKAGES if froxlor else [])) + "\n")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (dest / ".done").write_text(f"{time.monotonic() - started:.1f}\n")
    print(f"rootfs: {dest.name} bootstrapped in {time.monotonic() - started:.0f} s", flush=True)


# Runs in a froxlor tree with chroot, after debootstrap, from the tree's own apt sources
# (the mirror; SETUP points them at the lab's repository later). policy-rc.d refuses
# every daemon start while the packages install (mariadb-server's postinst would start
# the server in the chroot, left running on this machine); the server's system tables
# are made by its postinst without a running server. mariadb.service is enabled: each
# lab host starts it at boot.
FROXLOR_INSTALL = r"""
set -eu
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@"
systemctl enable mariadb.service >/dev/null 2>&1
"""


def install_froxlor_packages(root: Path) -> None:
    """MariaDB into the tree (FROXLOR_INSTALL): its .debs stay in the tree's apt cache,
    from where bootstrap moves them into the repository with the others."""
    proc = root / "proc"  # the server's install-time bootstrap (its system tables) reads it
    run("mount", "-t", "proc", "froxlor-fleet-lab-proc", str(proc))
    leftover: list[int] = []
    try:
        run("chroot", str(root), "sh", "-c", FROXLOR_INSTALL, "froxlor", *FROXLOR_PACKAGES,
            env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin",
                     DEBIAN_FRONTEND="noninteractive"))
    finally:
        # Nothing may keep running from the tree (policy-rc.d sees to it): a process
        # whose root is this new tree was started by this build; killed by its PID.
        leftover = [int(p.name) for p in Path("/proc").glob("[0-9]*")
                    if _root_of(p) == root.resolve()]
        for pid in leftover:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5 if leftover else 0)
        if subprocess.run(["umount", str(proc)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(proc)], capture_output=True)
    if leftover:
        raise RuntimeError(f"MariaDB's install left processes running in {root} (killed: "
                           f"{leftover})")


def _root_of(proc: Path) -> Path | None:
    try:
        return Path(os.readlink(proc / "root")).resolve()
    except OSError:
        return None


def set_up(dest: Path, ftpd: str) -> None:
    """Run SETUP in the tree, unless a lab host's overlay uses it right now (changing a
    lower layer under a mounted overlay is undefined)."""
    root = dest / "root"
    if f"lowerdir={root}," in Path("/proc/mounts").read_text():
        raise RuntimeError(f"{dest} needs its set-up refreshed but a lab host runs on it; "
                           "bring that lab down first")
    run("chroot", str(root), "sh", "-c", SETUP, "setup", dest.name, ftp_unit(ftpd),
        SUDO_USER, str(REPO_PORT), env=dict(os.environ, DEBIAN_FRONTEND="noninteractive",
                                            PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
    (dest / ".setup").write_text(SETUP_VERSION)


def index_repo(repo: Path) -> None:
    """A flat apt repository: Packages (+ .gz) and an unsigned Release ([trusted=yes])."""
    packages_text = run("apt-ftparchive", "packages", ".", cwd=repo).stdout
    (repo / "Packages").write_text(packages_text)
    run("gzip", "-9kf", "Packages", cwd=repo)
    release = run("apt-ftparchive", "release", ".", cwd=repo).stdout
    (repo / "Release").write_text(release)


def versions(root: Path, ftpd: str) -> str:
    """Versions of what the tests run on, read from the tree's dpkg database."""
    names = ["ufw", "python3", "systemd", "openssh-server", "fail2ban", "nftables", "mariadb-server"]
    names += ["pure-ftpd-mysql"] if ftpd == "pureftpd" else ["proftpd-core", "proftpd-basic"]
    out = []
    for name in names:
        res = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f=${Version}", name],
                             text=True, capture_output=True)
        if res.returncode == 0 and res.stdout:
            out.append(f"{name}={res.stdout}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    if argv[:1] == ["build"] and len(argv) in (2, 3, 4, 5, 6):
        ftpd = argv[argv.index("--ftpd") + 1] if "--ftpd" in argv else "proftpd"
        print(build(argv[1], ftpd, "--tenants" in argv, "--froxlor" in argv))
    elif argv == ["list"]:
        for d in sorted(CACHE.glob("*-*")):
            done = (d / ".done").exists()
            print(d.name, (d / "versions.txt").read_text().replace("\n", " ") if done else "(incomplete)")
    else:
        sys.exit("usage: rootfs.py build RELEASE [--ftpd proftpd|pureftpd] [--tenants] [--froxlor] | list")


if __name__ == "__main__":
    main(sys.argv[1:])

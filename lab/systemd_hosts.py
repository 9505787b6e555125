#!/usr/bin/env python3
"""Lab hosts with systemd as PID 1: Debian 11, 12 and 13 booted with systemd-nspawn (root).

    python3 lab/systemd_hosts.py up --release bullseye,bookworm,trixie [--per-release 1]
                                     [--pureftpd] [--tenants] [--froxlor]
    python3 lab/systemd_hosts.py status      # hosts, system state, whether ssh / ftp answer
    python3 lab/systemd_hosts.py check       # UFW state and a port check from the control side
    python3 lab/systemd_hosts.py exec NAME -- CMD...   # a command inside a host (its console)
    python3 lab/systemd_hosts.py down        # stop every container (by PID), remove all it made

The light namespace hosts of lab/lab.py share this machine's root filesystem and have no
init; these are the hosts froxlor really runs on. Each one boots
``systemd-nspawn --boot`` on its own overlay over a pristine, read-only Debian tree
(``lab/rootfs.py``: debootstrap minbase, cached), with real ``ssh.service``,
``ufw.service`` and ``proftpd.service`` (``--pureftpd``: one more bookworm host running
froxlor's pure-ftpd instead), the lab's SSH key for root and the sudo user ``fleet``,
IPv4 and IPv6 (ULA) on the lab bridge, no default route and no resolver
(``nameserver 127.0.0.1``, its own /etc/hosts entry). apt on each host points only at a
package repository this lab serves on the control address (the tree's own .debs), so
``apt-get install ufw`` works for real on a host where ufw was purged. With ``--froxlor``
every host also runs MariaDB holding froxlor's settings table as froxlor 2.x shapes it,
and froxlor's ``lib/userdata.inc.php`` (random passwords, made when the host is set up):
what ``froxlor-fleet discover`` reads (configure_froxlor).

It writes ``inventory.py``, ``group_data/*.py`` and ``lab.json`` into its LAB_DIR in the
shape the namespace lab writes (lab/inventory.py: every proftpd host is a web + ftp host,
like the namespace lab's ``web`` kind), so the same deploy and tests run against it.
``LAB_DIR``, ``LAB_PREFIX`` and ``LAB_SUBNET`` work as in lab/lab.py; the defaults differ
so both labs can be up.

Each container runs under a small supervisor shell (``systemctl reboot`` inside ends
nspawn with status 133; the supervisor boots it again, as systemd-nspawn@.service does)
in a cgroup of its own. ``down`` stops each container by its PID (nspawn powers the
container off), kills what is left in its cgroup by PID, unmounts the overlay and removes
the veth links, the bridge, the cgroups, the repository server and LAB_DIR. It never
touches this machine's own firewall, /etc/ufw or systemd.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root instead of lab/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
from lab import froxlor_proftpd, rootfs
from lab.access import ensure_key
from lab.check import CHECK_PORTS, probe
from lab.common import die, ensure_bridge, pid_alive, run
from lab.common import preflight as machine_preflight
from lab.services import wait_ssh

ROOT = Path(__file__).resolve().parent.parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
# apt-utils: apt-ftparchive for the repository; openssl: the FTP servers' certificates
CONTROL_PACKAGES = ["debootstrap", "apt-utils", "openssl"]
BOOT_TIMEOUT = 90.0
PASSIVE = (50000, 50100)  # the ftp_servers group data, as lab/inventory.py writes it


@dataclass(frozen=True)
class Config:
    """Where a systemd lab lives: its folder, name prefix and /24 (env, like lab/lab.py)."""

    lab_dir: Path
    prefix: str
    subnet: str

    @classmethod
    def from_env(cls) -> Config:
        return cls(lab_dir=Path(os.environ.get("LAB_DIR", ROOT / ".lab-systemd")).resolve(),
                   prefix=os.environ.get("LAB_PREFIX", "fxs"),
                   subnet=os.environ.get("LAB_SUBNET", "10.213.81"))

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def control_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def v6_prefix(self) -> str:
        return "fd00:{}:{}::".format(*self.subnet.split(".")[1:3])  # a ULA /64 per lab

    @property
    def control_ip6(self) -> str:
        return f"{self.v6_prefix}1"

    @property
    def cgroup_name(self) -> str:
        return f"froxlor-fleet-lab-{self.prefix}"


@dataclass(frozen=True)
class Host:
    name: str      # hostname and inventory name, e.g. lab-bookworm-1
    machine: str   # nspawn machine name, short: the veth is vb-<machine> (15 chars max)
    index: int
    release: str
    ftpd: str      # proftpd | pureftpd
    ip: str
    ip6: str
    tenants: bool = False  # fail2ban (and nftables on trixie) installed as Debian ships them
    froxlor: bool = False  # MariaDB with froxlor's settings, froxlor's userdata.inc.php

    @property
    def kind(self) -> str:
        return "web" if self.ftpd == "proftpd" else "web-pureftpd"


def plan_hosts(cfg: Config, releases: list[str], per_release: int, pureftpd: bool,
               tenants: bool = False, froxlor: bool = False) -> list[Host]:
    specs = [(f"lab-{r}-{n}", r, "proftpd") for r in releases for n in range(1, per_release + 1)]
    if pureftpd:
        specs.append(("lab-bookworm-pureftpd", "bookworm", "pureftpd"))
    return [Host(name=name, machine=f"{cfg.prefix}-{i}", index=i, release=release, ftpd=ftpd,
                 ip=f"{cfg.subnet}.{10 + i}", ip6=f"{cfg.v6_prefix}{10 + i}", tenants=tenants,
                 froxlor=froxlor)
            for i, (name, release, ftpd) in enumerate(specs, 1)]


# ---------------------------------------------------------------- control-side packages

def installed_version(pkg: str) -> str:
    res = run("dpkg-query", "-W", "-f=${Status} ${Version}", pkg, check=False)
    status, _, version = res.stdout.strip().rpartition(" ")
    return version if res.returncode == 0 and status == "install ok installed" else ""


def ensure_packages() -> None:
    """debootstrap, apt-ftparchive and systemd-nspawn; systemd-container is pinned to this
    machine's systemd version, so installing it never upgrades this machine's systemd."""
    wanted = [p for p in CONTROL_PACKAGES if not installed_version(p)]
    systemd = installed_version("systemd")
    if not installed_version("systemd-container") or (
            systemd and installed_version("systemd-container") != systemd):
        wanted.append(f"systemd-container={systemd}" if systemd else "systemd-container")
    if not wanted:
        return
    print(f"lab: installing {' '.join(wanted)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")  # no daemon of these packages starts here
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        if run("apt-get", "install", "-y", "-qq", "--no-upgrade", *wanted,
               check=False, env=env).returncode != 0:
            run("apt-get", "update", "-qq", env=env)
            run("apt-get", "install", "-y", "-qq", "--no-upgrade", *wanted, env=env)
    finally:
        if made_policy:
            policy.unlink()


# ---------------------------------------------------------------- the package repository

def repo_pidfile(cfg: Config) -> Path:
    return cfg.lab_dir / "repo-server.pid"


def start_repo(cfg: Config, trees: list[Path]) -> None:
    """Serve each tree's repo/ at http://<control ip>:REPO_PORT/<tree name>/ (bound to the
    lab bridge's address only: nothing else on the network sees it)."""
    served = cfg.lab_dir / "repo"
    served.mkdir(exist_ok=True)
    for tree in trees:
        link = served / tree.name
        if not link.exists():
            link.symlink_to(tree / "repo")
    if pid_alive(repo_pidfile(cfg)):
        return
    with open(cfg.lab_dir / "repo-server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", cfg.control_ip, "--directory",
             str(served), str(rootfs.REPO_PORT)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    repo_pidfile(cfg).write_text(str(proc.pid))
    deadline = time.monotonic() + 10
    while probe(cfg.control_ip, rootfs.REPO_PORT, 0.5) != "open":
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"package repository did not start: "
                               f"{(cfg.lab_dir / 'repo-server.log').read_text()[-500:]}")
        time.sleep(0.1)


# ---------------------------------------------------------------- one host

def host_dir(cfg: Config, name: str) -> Path:
    return cfg.lab_dir / "hosts" / name


def mount_overlay(tree: Path, hd: Path) -> Path:
    merged = hd / "root"
    for sub in ("upper", "work", "root"):
        (hd / sub).mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(merged):
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={tree / 'root'},upperdir={hd / 'upper'},workdir={hd / 'work'}",
            str(merged))
    return merged


def write_file(path: Path, text: str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, *owner)


def user_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"no user {user} in {root}")


def configure_host(cfg: Config, host: Host, root: Path, pubkey: str) -> None:
    """What makes one host itself, written through its overlay (the tree stays pristine)."""
    hd = host_dir(cfg, host.name)
    write_file(root / "etc/hostname", host.name + "\n")
    write_file(root / "etc/hosts", f"127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                                   f"{host.ip} {host.name}\n{host.ip6} {host.name}\n"
                                   f"{cfg.control_ip} lab-control\n")
    write_file(root / "etc/resolv.conf", "nameserver 127.0.0.1\n")  # nothing answers: no lookups leave
    write_file(root / "etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    write_file(root / "etc/lab-net.conf", f"IPV4={host.ip}/24\nIPV6={host.ip6}/64\n")
    key = hd / "ssh_host_ed25519_key"  # kept on the control side too, for known_hosts
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(key))
    write_file(root / "etc/ssh/ssh_host_ed25519_key", key.read_text(), 0o600)
    write_file(root / "etc/ssh/ssh_host_ed25519_key.pub", (hd / "ssh_host_ed25519_key.pub").read_text())
    write_file(root / "etc/ssh/sshd_config.d/froxlor-fleet-lab-hostkey.conf",
               "HostKey /etc/ssh/ssh_host_ed25519_key\n")
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    write_file(root / "root/.ssh/authorized_keys", pubkey, 0o600)
    # The sudo user's shell (/bin/bash) and keys are the container's own: its login, seen
    # from inside, opens nothing under LAB_DIR, wherever that lies (cf. lab/access.py).
    uid, gid = user_ids(root, rootfs.SUDO_USER)
    home = root / "home" / rootfs.SUDO_USER
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    os.chown(home / ".ssh", uid, gid)
    write_file(home / ".ssh/authorized_keys", pubkey, 0o600, (uid, gid))
    if host.ftpd == "proftpd":
        configure_proftpd(cfg, root, host)
    else:
        configure_pureftpd(root, host)
    if host.tenants:
        configure_fail2ban(root, host)
    if host.froxlor:
        configure_froxlor(cfg, root)


# An admin's jail.d file: the sshd jail reads the journal (no rsyslog, so no auth.log,
# on these hosts, as on a minimal Debian) and bans for a day (beyond any test); on
# bookworm the admin chose fail2ban's ufw action (its bans are UFW user rules), on
# trixie Debian's own default stays (nftables: fail2ban's own inet f2b-table).
FAIL2BAN_JAIL = "[sshd]\nenabled = true\nbackend = systemd\nbantime = 1d\n"
FAIL2BAN_UFW = "[DEFAULT]\nbanaction = ufw\nbanaction_allports = ufw\n\n"
# And a jail of fail2ban's iptables action beside it (its own f2b-sshd-iptables chain,
# jumped to from INPUT): what ufw flushes under MANAGE_BUILTINS=yes.
FAIL2BAN_IPTABLES = ("\n[sshd-iptables]\nenabled = true\nfilter = sshd\nbackend = systemd\n"
                     "port = ssh\nbanaction = iptables-multiport\nbantime = 1d\n")


def configure_fail2ban(root: Path, host: Host) -> None:
    jails = FAIL2BAN_UFW + FAIL2BAN_JAIL + FAIL2BAN_IPTABLES if host.release != "trixie" else FAIL2BAN_JAIL
    write_file(root / "etc/fail2ban/jail.d/zz-froxlor-fleet-lab.local", jails)


# froxlor's database as a froxlor 2.x install leaves it, reduced to what discover reads:
# panel_settings (install/froxlor.sql.php's columns) with the service settings, a
# secret beside them, and froxlor's own database user. Seeded at the host's first boot
# by lab-froxlor-db.service, after mariadb.service, as root over the unix socket.
FROXLOR_DB_UNIT = """\
[Unit]
Description=froxlor-fleet lab: froxlor's database (panel_settings), once
After=mariadb.service
Requires=mariadb.service
ConditionPathExists=!/var/lib/froxlor-fleet-lab/froxlor-db.done

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mariadb < /etc/froxlor-fleet-lab/froxlor.sql'
ExecStart=/bin/mkdir -p /var/lib/froxlor-fleet-lab
ExecStart=/bin/touch /var/lib/froxlor-fleet-lab/froxlor-db.done

[Install]
WantedBy=multi-user.target
"""
# Where discover's read looks first (froxlor's Debian package installs there).
FROXLOR_DIR = "/var/www/froxlor"
# 3306 on every address, as on froxlor hosts whose customers reach their databases
# from elsewhere (mysql_access_host); small buffers, no name lookups (no resolver here).
FROXLOR_MARIADB_CNF = ("[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n"
                       "innodb_buffer_pool_size = 16M\nperformance_schema = OFF\n")


def sql_text(value: str) -> str:
    """``value`` as an SQL string literal (MariaDB's default sql_mode)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def froxlor_settings(cfg: Config, smtp_secret: str) -> list[tuple[str, str, str]]:
    """panel_settings rows (settinggroup, varname, value) of a froxlor 2.x web host with
    ProFTPd, Bind, Postfix and Dovecot, customers' databases reachable from the control
    address, the control address (v6) as secondary nameserver; plus froxlor's SMTP relay
    password (a secret discover must never read) and a few rows it does not read."""
    return [("system", "webserver", "apache2"), ("system", "ftpserver", "proftpd"),
            ("system", "bind_enable", "1"), ("system", "dns_server", "Bind"),
            ("system", "mtaserver", "postfix"), ("system", "mdaserver", "dovecot"),
            ("system", "mysql_access_host", f"127.0.0.1,localhost,{cfg.control_ip}"),
            ("system", "nameservers", "ns1.lab.invalid,ns2.lab.invalid"),
            ("system", "axfrservers", cfg.control_ip6), ("system", "http3_support", "0"),
            ("system", "hostname", "froxlor.lab.invalid"), ("system", "mail_use_smtp", "1"),
            ("system", "mail_smtp_user", "relay"), ("system", "mail_smtp_passwd", smtp_secret),
            ("panel", "version", "2.2.5")]


def froxlor_userdata(db_password: str, root_password: str) -> str:
    """lib/userdata.inc.php as froxlor 2.x writes it (Install/Core.php createUserdataConf
    through PhpHelper::parseArrayToPhpFile: each password a nowdoc)."""
    return ("<?php\n// autogenerated froxlor file\n\n$sql = [\n\t'debug' => false,\n"
            "\t'host' => 'localhost',\n\t'user' => 'froxlor',\n"
            f"\t'password' => <<<'EOT'\n{db_password}\nEOT,\n\t'db' => 'froxlor',\n];\n"
            "$sql_root = [\n\t'0' => [\n\t\t'caption' => 'Default',\n"
            "\t\t'host' => 'localhost',\n\t\t'user' => 'froxlorroot',\n"
            f"\t\t'password' => <<<'EOT'\n{root_password}\nEOT,\n\t],\n];\n")


def configure_froxlor(cfg: Config, root: Path) -> None:
    """froxlor's userdata.inc.php, its database's seed and the unit that loads it, with
    passwords and the SMTP secret made now, for this host only (root's files: a test
    reads them to check no output holds them)."""
    db_password = secrets.token_urlsafe(18) + "'\"$x"  # quotes: the read's pattern must cope
    root_password = secrets.token_urlsafe(18)
    smtp_secret = "smtp-" + secrets.token_urlsafe(18)
    write_file(root / FROXLOR_DIR.lstrip("/") / "lib/userdata.inc.php",
               froxlor_userdata(db_password, root_password), 0o640)
    rows = ",\n".join(f"({', '.join(sql_text(v) for v in row)})"
                       for row in froxlor_settings(cfg, smtp_secret))
    seed = ("CREATE DATABASE IF NOT EXISTS froxlor CHARACTER SET utf8 COLLATE utf8_general_ci;\n"
            "USE froxlor;\n"
            "CREATE TABLE panel_settings (\n"
            "  settingid int(11) unsigned NOT NULL auto_increment,\n"
            "  settinggroup varchar(255) NOT NULL default '',\n"
            "  varname varchar(255) NOT NULL default '',\n"
            "  value text NOT NULL,\n"
            "  PRIMARY KEY (settingid)\n"
            ") ENGINE=InnoDB CHARSET=utf8 COLLATE=utf8_general_ci;\n"
            f"INSERT INTO panel_settings (settinggroup, varname, value) VALUES\n{rows};\n"
            f"CREATE USER 'froxlor'@'localhost' IDENTIFIED BY {sql_text(db_password)};\n"
            "GRANT ALL ON froxlor.* TO 'froxlor'@'localhost';\n")
    write_file(root / "etc/froxlor-fleet-lab/froxlor.sql", seed, 0o600)
    (root / "etc/froxlor-fleet-lab").chmod(0o700)
    write_file(root / "etc/mysql/mariadb.conf.d/60-froxlor-fleet-lab.cnf", FROXLOR_MARIADB_CNF)
    unit = root / "etc/systemd/system/lab-froxlor-db.service"
    write_file(unit, FROXLOR_DB_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants/lab-froxlor-db.service"
    wants.parent.mkdir(parents=True, exist_ok=True)
    if not wants.is_symlink():
        wants.symlink_to("../lab-froxlor-db.service")


def configure_proftpd(cfg: Config, root: Path, host: Host) -> None:
    """ProFTPd as froxlor configures it (TLS required; the namespace lab's function, with
    a lab-only anonymous login) and a file to fetch."""
    froxlor_proftpd.write_config(root / "etc/proftpd", host.name,
                                 [cfg.control_ip, cfg.control_ip6])
    write_file(root / "srv/ftp/hello.txt", f"hello from {host.name}\n" * 200)


# What froxlor's bookworm.xml writes for pure-ftpd (froxlor/Froxlor lib/configfiles/
# bookworm.xml, daemon "pureftpd"): one file per option, never PassivePortRange or
# ForcePassiveIP. db/mysql.conf is froxlor's MySQL backend (no database in the lab).
PUREFTPD_FROXLOR = {"TLS": "1", "MinUID": "1000", "MySQLConfigFile": "/etc/pure-ftpd/db/mysql.conf",
                    "NoAnonymous": "yes", "MaxIdleTime": "15", "ChrootEveryone": "yes",
                    "PAMAuthentication": "no", "CustomerProof": "1", "Bind": "21"}


def configure_pureftpd(root: Path, host: Host) -> None:
    """froxlor's pure-ftpd files, a self-signed certificate where froxlor's create-cert.sh
    puts it, and (lab only) anonymous read-only logins instead of froxlor's MySQL users."""
    conf = root / "etc/pure-ftpd/conf"
    for option, value in PUREFTPD_FROXLOR.items():
        write_file(conf / option, value + "\n")
    write_file(conf / "NoAnonymous", "no\n")  # lab only: anonymous logins for the tests
    write_file(conf / "AnonymousCantUpload", "yes\n")
    write_file(root / "etc/default/pure-ftpd-common",
               "# froxlor's settings (lib/configfiles/bookworm.xml)\n"
               "STANDALONE_OR_INETD=standalone\nVIRTUALCHROOT=false\nUPLOADSCRIPT=\n"
               "UPLOADUID=\nUPLOADGID=\n")
    pem = root / "etc/ssl/private/pure-ftpd.pem"
    pem.parent.mkdir(parents=True, exist_ok=True)
    run("openssl", "req", "-x509", "-nodes", "-days", "30", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", str(pem), "-out",
        str(pem), "-subj", f"/CN={host.name}")
    pem.chmod(0o600)
    ftp_home = root / "srv/ftp"
    write_file(ftp_home / "hello.txt", f"hello from {host.name}\n" * 200)


def cgroup_dirs(cfg: Config, host: Host) -> list[Path]:
    """The host's own cgroup in each hierarchy that tracks processes (v2, or v1's
    name=systemd and v2 side by side on a hybrid machine like this one)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        bases = [CGROUP_ROOT]
    else:
        bases = [CGROUP_ROOT / h for h in ("systemd", "unified") if (CGROUP_ROOT / h).is_dir()]
    return [base / cfg.cgroup_name / host.machine for base in bases]


# The supervisor: boots the container again after `systemctl reboot` inside (nspawn exits
# 133 then), as systemd-nspawn@.service does; stops for anything else or once `stop`
# exists. It records each nspawn's PID so `down` can stop it by PID.
SUPERVISOR = r"""
hd=$1; shift
while :; do
  "$@" &
  echo "$!" > "$hd/nspawn.pid"
  wait "$!"; rc=$?
  if [ "$rc" -ne 133 ] || [ -e "$hd/stop" ]; then exit "$rc"; fi
done
"""


def nspawn_command(cfg: Config, host: Host, root: Path) -> list[str]:
    return ["systemd-nspawn", "--quiet", "--boot", f"--directory={root}",
            f"--machine={host.machine}", f"--hostname={host.name}",
            "--register=no", "--keep-unit",  # no systemd here to register with
            f"--network-bridge={cfg.bridge}", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no", "--console=read-only"]


def start_container(cfg: Config, host: Host, root: Path) -> None:
    hd = host_dir(cfg, host.name)
    if pid_alive(hd / "supervisor.pid"):
        return
    (hd / "stop").unlink(missing_ok=True)
    cgroups = cgroup_dirs(cfg, host)
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)

    def enter_cgroup() -> None:  # before exec: every process of this host lands there
        for cg in cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    with open(hd / "console.log", "a") as log:
        proc = subprocess.Popen(["sh", "-c", SUPERVISOR, "supervise", str(hd),
                                 *nspawn_command(cfg, host, root)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, preexec_fn=enter_cgroup)
    (hd / "supervisor.pid").write_text(str(proc.pid))


def leader_pid(cfg: Config, name: str) -> int:
    """PID (on this machine) of the host's PID 1, systemd: nspawn's child."""
    nspawn = pid_alive(host_dir(cfg, name) / "nspawn.pid")
    if not nspawn:
        raise RuntimeError(f"{name} is not running")
    for child in Path(f"/proc/{nspawn}/task").glob("*/children"):
        for pid in child.read_text().split():
            status = Path(f"/proc/{pid}/status").read_text()
            m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
            if m and m.group(1).split()[-1] == "1":
                return int(pid)
    raise RuntimeError(f"{name}: container init not found (still starting?)")


def nsenter(cfg: Config, name: str, *cmd: str) -> list[str]:
    """A command in every namespace of the host, with a clean environment: as if typed
    at its console."""
    return ["nsenter", "-t", str(leader_pid(cfg, name)), "-a", "--",
            "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8", "HOME=/root", *cmd]


def exec_in(cfg: Config, name: str, *cmd: str, check: bool = True,
            timeout: float | None = 120) -> subprocess.CompletedProcess:
    return run(*nsenter(cfg, name, *cmd), check=check, timeout=timeout)


def wait_booted(cfg: Config, name: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until systemd in the host finished booting; its state (running/degraded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = exec_in(cfg, name, "systemctl", "is-system-running", "--wait", check=False,
                          timeout=max(1.0, deadline - time.monotonic()))
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                return state
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if time.monotonic() > deadline:
            log = (host_dir(cfg, name) / "console.log").read_text()[-1500:]
            raise RuntimeError(f"{name} did not finish booting in {timeout:.0f} s:\n{log}")
        time.sleep(0.2)


def reboot(cfg: Config, host: Host, timeout: float = BOOT_TIMEOUT) -> None:
    """`systemctl reboot` inside; the supervisor boots it again; wait for ssh."""
    old = leader_pid(cfg, host.name)
    exec_in(cfg, host.name, "systemctl", "reboot", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if leader_pid(cfg, host.name) != old:
                break
        except (RuntimeError, OSError):
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError(f"{host.name} did not come back from reboot")
    wait_booted(cfg, host.name, max(1.0, deadline - time.monotonic()))
    wait_ssh([host.ip, host.ip6], timeout=max(1.0, deadline - time.monotonic()))


# ---------------------------------------------------------------- the lab

def load_hosts(cfg: Config) -> list[Host]:
    info = cfg.lab_dir / "lab.json"
    if not info.exists():
        return []
    fields = Host.__dataclass_fields__
    return [Host(**{k: v for k, v in h.items() if k in fields})
            for h in json.loads(info.read_text())["hosts"]]


def write_inventory(cfg: Config, hosts: list[Host]) -> None:
    """inventory.py, group_data/ and lab.json in the namespace lab's shape (lab/inventory.py)."""
    key = cfg.lab_dir / "id_ed25519"
    known = cfg.lab_dir / "known_hosts"
    lines = []
    for h in hosts:
        kind, key_text = (host_dir(cfg, h.name) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines += [f"{h.ip} {kind} {key_text}\n", f"{h.ip6} {kind} {key_text}\n"]
    known.write_text("".join(lines))
    groups: dict[str, list[str]] = {}
    for h in hosts:
        member_of = ["web_servers", "ftp_servers" if h.ftpd == "proftpd" else "pureftpd_servers"]
        for group in [*member_of, h.release]:
            groups.setdefault(group, []).append(h.name)
    addr = {h.name: h.ip for h in hosts}
    lines = ['"""Systemd lab inventory, generated by lab/systemd_hosts.py up: do not edit."""', "",
             "from froxlor_fleet.fleetcheck import check_fleet", ""]
    for group, members in groups.items():
        entries = ", ".join(f'("{m}", {{"ssh_hostname": "{addr[m]}"}})' for m in members)
        lines.append(f"{group} = [{entries}]")
    lines += ["", "check_fleet(__file__)", ""]
    (cfg.lab_dir / "inventory.py").write_text("\n".join(lines))
    gd = cfg.lab_dir / "group_data"
    gd.mkdir(exist_ok=True)
    files = {
        "all.py": (f'ssh_user = "root"\nssh_key = "{key}"\nssh_known_hosts_file = "{known}"\n'
                   'ssh_strict_host_key_checking = "yes"\nssh_connect_timeout = 5\n'),
        "web_servers.py": 'froxlor_roles = ["web"]\n',
        "ftp_servers.py": f'froxlor_roles = ["ftp"]\nftp_passive_ports = {PASSIVE!r}\n',
        # froxlor's pure-ftpd (ftp_daemon "auto" finds it); the same range as ProFTPd's
        "pureftpd_servers.py": f'froxlor_roles = ["ftp"]\nftp_passive_ports = {PASSIVE!r}\n',
    }
    for fname, text in files.items():
        (gd / fname).write_text("# Systemd lab group data, generated by lab/systemd_hosts.py up.\n" + text)
    (cfg.lab_dir / "lab.json").write_text(json.dumps(
        {"kind": "systemd", "control_ip": cfg.control_ip, "control_ip6": cfg.control_ip6,
         "bridge": cfg.bridge, "sudo_user": rootfs.SUDO_USER, "prefix": cfg.prefix,
         "hosts": [dict(asdict(h), kind=h.kind) for h in hosts], "groups": groups}, indent=1))


def preflight(cfg: Config) -> None:
    machine_preflight()
    if cfg.lab_dir.is_relative_to("/run"):
        die(f"LAB_DIR {cfg.lab_dir} must not be under /run")
    if not re.fullmatch(r"[a-z][a-z0-9]{1,5}", cfg.prefix):
        die(f"LAB_PREFIX {cfg.prefix!r}: 2-6 lower-case letters/digits (link names are short)")


def check_inotify(n: int) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    if n * 9 > limit:  # systemd + journald + udev... each hold a few instances
        print(f"lab: warning: fs.inotify.max_user_instances={limit} may be too low for {n} "
              "containers (raise it on a machine you own)", file=sys.stderr)


def up(cfg: Config, releases: list[str], per_release: int, pureftpd: bool,
       tenants: bool = False, froxlor: bool = False) -> None:
    preflight(cfg)
    hosts = plan_hosts(cfg, releases, per_release, pureftpd, tenants, froxlor)
    if load_hosts(cfg) and load_hosts(cfg) != hosts:
        down(cfg, quiet=True)  # a different lab: start over
    check_inotify(len(hosts))
    ensure_packages()
    cfg.lab_dir.mkdir(parents=True, exist_ok=True)
    try:
        trees = {(h.release, h.ftpd): rootfs.build(h.release, h.ftpd, h.tenants, h.froxlor)
                 for h in hosts}
        pubkey = ensure_key(cfg.lab_dir).with_suffix(".pub").read_text()
        ensure_bridge(cfg.bridge, cfg.control_ip, cfg.control_ip6)
        start_repo(cfg, list(trees.values()))
        started = time.monotonic()
        for h in hosts:
            root = mount_overlay(trees[(h.release, h.ftpd)], host_dir(cfg, h.name))
            if not (host_dir(cfg, h.name) / "configured").exists():
                configure_host(cfg, h, root, pubkey)
                (host_dir(cfg, h.name) / "configured").write_text("")
            start_container(cfg, h, root)
        with ThreadPoolExecutor(max_workers=8) as pool:
            states = list(pool.map(lambda h: wait_booted(cfg, h.name), hosts))
        booted = time.monotonic() - started
        wait_ssh([h.ip for h in hosts] + [h.ip6 for h in hosts], timeout=BOOT_TIMEOUT)
        with ThreadPoolExecutor(max_workers=4) as pool:  # apt lists, as a real host has them
            list(pool.map(lambda h: exec_in(cfg, h.name, "apt-get", "update", "-qq"), hosts))
        write_inventory(cfg, hosts)
    except Exception as e:  # clean up what we made, then report one line
        down(cfg, quiet=True)
        die(f"up failed, lab removed: {e}")
    for h, state in zip(hosts, states, strict=True):
        if state != "running":
            failed = exec_in(cfg, h.name, "systemctl", "--failed", "--no-legend", check=False).stdout
            print(f"lab: warning: {h.name} is {state}: {failed.strip()}", file=sys.stderr)
    print(f"lab: {len(hosts)} systemd host(s) booted in {booted:.1f} s on {cfg.bridge} "
          f"({cfg.subnet}.0/24); inventory: {cfg.lab_dir / 'inventory.py'}")


def stop_containers(cfg: Config, names: list[str], timeout: float = 20) -> None:
    """Power each container off through nspawn (SIGTERM to its PID), then kill by PID
    whatever is left: the supervisor, nspawn, any process still in the host's cgroup."""
    for name in names:
        hd = host_dir(cfg, name)
        if hd.exists():
            (hd / "stop").write_text("")
        if pid := pid_alive(hd / "nspawn.pid"):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
            pid_alive(host_dir(cfg, n) / "supervisor.pid") for n in names):
        time.sleep(0.1)
    for name in names:
        for pidfile in ("supervisor.pid", "nspawn.pid"):
            if pid := pid_alive(host_dir(cfg, name) / pidfile):
                os.kill(pid, signal.SIGKILL)


def remove_cgroups(cfg: Config) -> None:
    bases = [CGROUP_ROOT, *(CGROUP_ROOT / h for h in ("systemd", "unified"))]
    for base in bases:
        top = base / cfg.cgroup_name
        if not top.is_dir():
            continue
        for _ in range(50):  # kill stragglers by PID, deepest cgroups first
            dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
            pids = [int(p) for d in [*dirs, top] for p in (d / "cgroup.procs").read_text().split()]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                break
            time.sleep(0.1)
        for d in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            d.rmdir()
        top.rmdir()


def down(cfg: Config, quiet: bool = False) -> None:
    preflight(cfg)
    hosts_dir = cfg.lab_dir / "hosts"
    names = sorted(p.name for p in hosts_dir.iterdir()) if hosts_dir.exists() else []
    stop_containers(cfg, names)
    remove_cgroups(cfg)
    for name in names:
        root = host_dir(cfg, name) / "root"
        if os.path.ismount(root):
            run("umount", str(root), check=False)
            if os.path.ismount(root):
                run("umount", "-l", str(root))
    if pid := pid_alive(repo_pidfile(cfg)):
        os.kill(pid, signal.SIGTERM)
    links = run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        dev = line.split(":")[1].strip().split("@")[0]
        if dev == cfg.bridge or dev.startswith(f"vb-{cfg.prefix}-"):
            run("ip", "link", "del", dev, check=False)
    if cfg.lab_dir.exists():
        shutil.rmtree(cfg.lab_dir)
    if not quiet:
        print("lab: down")


def status(cfg: Config) -> None:
    preflight(cfg)
    hosts = load_hosts(cfg)
    if not hosts:
        print("lab: not up")
        return
    for h in hosts:
        try:
            state = exec_in(cfg, h.name, "systemctl", "is-system-running", check=False,
                            timeout=10).stdout.strip()
        except (RuntimeError, subprocess.TimeoutExpired):
            state = "STOPPED"
        ports = " ".join(f"{p}:{probe(h.ip, p, 1.0)}" for p in (22, 21))
        print(f"{h.name:22} {h.ip:15} {h.release:9} {h.ftpd:9} {state:9} {ports}")


def check(cfg: Config) -> None:
    """Per-host UFW state and a TCP port check from the control side (as lab/check.py's)."""
    preflight(cfg)
    hosts = load_hosts(cfg)
    if not hosts:
        die("lab is not up")
    ports = [port for _, port in CHECK_PORTS]
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = {(h.name, port): pool.submit(probe, h.ip, port) for h in hosts for port in ports}
        mark = {"open": "open", "closed": "adm", "blocked": "-"}
        print(f"{'host':22} {'ufw':8} " + " ".join(f"{p:>5}" for p in ports))
        for h in hosts:
            out = exec_in(cfg, h.name, "ufw", "status", check=False).stdout
            active = "active" if "Status: active" in out else "inactive"
            cells = [mark[results[(h.name, p)].result()] for p in ports]
            print(f"{h.name:22} {active:8} " + " ".join(f"{c:>5}" for c in cells))
    print("open: a service answered; adm: the firewall admits it (nothing listens); "
          "-: blocked (no answer)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="systemd_hosts.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="boot the hosts (idempotent)")
    p_up.add_argument("--release", default="bullseye,bookworm,trixie",
                      help="comma-separated: bullseye, bookworm, trixie")
    p_up.add_argument("--per-release", type=int, default=1)
    p_up.add_argument("--pureftpd", action="store_true",
                      help="one more bookworm host running froxlor's pure-ftpd, not proftpd")
    p_up.add_argument("--tenants", action="store_true",
                      help="fail2ban (ufw action on bookworm, nftables on trixie) on every host")
    p_up.add_argument("--froxlor", action="store_true",
                      help="MariaDB with froxlor's settings and froxlor's userdata.inc.php on "
                           "every host (what discover reads)")
    sub.add_parser("down", help="stop and remove everything the lab made")
    sub.add_parser("status", help="list hosts")
    sub.add_parser("check", help="UFW state and a port check from the control side")
    p_exec = sub.add_parser("exec", help="run a command inside a host")
    p_exec.add_argument("name")
    p_exec.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = Config.from_env()
    if args.cmd == "up":
        releases = [r for r in args.release.split(",") if r]
        bad = [r for r in releases if r not in rootfs.RELEASES]
        if bad or not releases or not 1 <= args.per_release <= 10:
            die(f"releases must be among {', '.join(rootfs.RELEASES)}; per-release 1-10")
        up(cfg, releases, args.per_release, args.pureftpd, args.tenants, args.froxlor)
    elif args.cmd == "down":
        down(cfg)
    elif args.cmd == "status":
        status(cfg)
    elif args.cmd == "check":
        check(cfg)
    elif args.cmd == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        preflight(cfg)
        sys.exit(subprocess.run(nsenter(cfg, args.name, *command)).returncode)


if __name__ == "__main__":
    main(sys.argv[1:])

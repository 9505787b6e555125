"""One namespace host: its private files, the holder process (PID 1 of its mount, UTS
and PID namespaces, in its own network namespace), commands inside it, a pristine UFW."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from lab import froxlor_proftpd
from lab.access import (
    AUTHORIZED_KEYS_PATH,
    LOGGING_SHELL_PATH,
    LOGIN_DIR,
    LOGIN_SHELL_PATH,
    write_accounts,
    write_login_files,
)
from lab.common import pid_alive, run
from lab.config import BRIDGE, CONTROL_IP, CONTROL_IP6, LAB_DIR, PREFIX, SUDO_USER, host_ip, host_ip6

# PID 1 of each host: reaps orphans (daemonised proftpd) and otherwise sleeps.
REAPER = ("import os, time\nwhile True:\n    try:\n        os.wait()\n"
          "    except ChildProcessError:\n        time.sleep(1)\n")

# Runs inside the host's fresh mount/UTS/PID namespaces before it becomes the holder.
HOST_SETUP = r"""
set -e
hd=$1; name=$2
mount --make-rprivate /
for pair in etc-ufw:/etc/ufw default-ufw:/etc/default/ufw etc-proftpd:/etc/proftpd \
            hosts:/etc/hosts resolv.conf:/etc/resolv.conf hostname:/etc/hostname \
            srv-ftp:/srv/ftp log-proftpd:/var/log/proftpd passwd:/etc/passwd \
            group:/etc/group shadow:/etc/shadow sudoers.d:/etc/sudoers.d \
            var-lib-froxlor-fleet:/var/lib/froxlor-fleet; do
  src=$hd/${pair%%:*}; dst=${pair#*:}
  [ -e "$dst" ] || mkdir -p "$dst"
  mount --bind "$src" "$dst"
done
mount -t tmpfs -o mode=0755 lab-run /run
mkdir -p /run/sshd /run/lock
# What logins open as the logged-in user, where every lab user reaches it (lab/access.py)
install -d -m 0755 "$4"
install -m 0755 "$hd/login/login-shell.sh" "$hd/login/logging-shell.sh" "$4/"
install -m 0644 "$hd/login/authorized_keys" "$4/"
: > /run/lab-ssh-commands.log; chmod 666 /run/lab-ssh-commands.log  # root and the sudo user log
[ -e /usr/bin/systemctl ] && mount --bind /dev/null /usr/bin/systemctl
hostname "$name"
ip link set lo up
exec python3 -c "$3"
"""



def write_host_files(i: int, name: str, tree: Path) -> Path:
    hd = LAB_DIR / "hosts" / name
    if hd.exists():
        return hd
    hd.mkdir(parents=True)
    shutil.copytree(tree / "etc-ufw", hd / "etc-ufw", symlinks=True)
    shutil.copy(tree / "default-ufw", hd / "default-ufw")
    shutil.copytree(tree / "etc-proftpd", hd / "etc-proftpd", symlinks=True)
    # ProFTPd as froxlor configures it (TLS required), plus a lab-only anonymous login.
    froxlor_proftpd.write_config(hd / "etc-proftpd", name, [CONTROL_IP, CONTROL_IP6])
    (hd / "hosts").write_text(f"127.0.0.1 localhost\n{host_ip(i)} {name}\n{host_ip6(i)} {name}\n"
                              f"{CONTROL_IP} lab-control\n")
    (hd / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # nothing answers: no lookups leave
    (hd / "hostname").write_text(name + "\n")
    (hd / "srv-ftp").mkdir()
    (hd / "srv-ftp/hello.txt").write_text(f"hello from {name}\n" * 200)
    (hd / "log-proftpd").mkdir()
    (hd / "var-lib-froxlor-fleet").mkdir()  # commit-confirmed snapshots, per host
    write_accounts(hd)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hd / "ssh_host_ed25519_key"))
    write_login_files(hd, (LAB_DIR / "id_ed25519.pub").read_text())
    (hd / "sshd_config").write_text(
        f"ListenAddress {host_ip(i)}\nListenAddress {host_ip6(i)}\nPort 22\n"
        f"HostKey {hd}/ssh_host_ed25519_key\n"
        f"AuthorizedKeysFile {AUTHORIZED_KEYS_PATH}\nPidFile /run/sshd.pid\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxStartups 200\n"
        "MaxSessions 50\nSubsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n"
        f"ForceCommand {LOGGING_SHELL_PATH}\n")
    return hd



def holder_pid(name: str) -> int | None:
    return pid_alive(LAB_DIR / "hosts" / name / "holder.pid")


def nsenter(name: str, *cmd: str) -> list[str]:
    pid = holder_pid(name)
    if not pid:
        raise RuntimeError(f"{name} is not running")
    return ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--", *cmd]



def exec_in(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command inside lab host ``name`` (as its root, like a console login)."""
    return run(*nsenter(name, *cmd), check=check)



def start_host(i: int, name: str, hd: Path) -> None:
    netns = f"{PREFIX}-h{i}"
    veth = f"{PREFIX}-v{i}"
    if run("ip", "netns", "pids", netns, check=False).returncode != 0:
        run("ip", "netns", "add", netns)
    if run("ip", "link", "show", veth, check=False).returncode != 0:
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "link", "set", veth, "master", BRIDGE, "up")
        run("ip", "-n", netns, "addr", "add", f"{host_ip(i)}/24", "dev", "eth0")
        run("ip", "-n", netns, "-6", "addr", "add", f"{host_ip6(i)}/64", "dev", "eth0", "nodad")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
    if not holder_pid(name):
        with open(hd / "holder.log", "w") as log:  # the holder keeps its own copy of the fd
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, "unshare", "-m", "-u", "-p", "-f", "--mount-proc",
                 "sh", "-c", HOST_SETUP, "lab-host", str(hd), name, REAPER, LOGIN_DIR],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)
        # unshare --fork's child (after sh execs it: the reaper) is PID 1 of the host.
        for _ in range(200):
            kids = run("pgrep", "-P", str(proc.pid), check=False).stdout.split()
            comm = Path(f"/proc/{kids[0]}/comm").read_text().strip() if kids else ""
            if comm.startswith("python"):  # sh has exec'd the reaper: set-up is done
                (hd / "holder.pid").write_text(kids[0])
                (hd / "unshare.pid").write_text(str(proc.pid))
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{name}: host did not come up: {(hd / 'holder.log').read_text()}")


def sudo_login_out_of_reach(name: str) -> list[str]:
    """What the sudo user's login on ``name`` opens as that user but cannot reach."""
    wanted = {LOGIN_SHELL_PATH: "-x", LOGGING_SHELL_PATH: "-x", AUTHORIZED_KEYS_PATH: "-r"}
    return [path for path, flag in wanted.items() if exec_in(
        name, "setpriv", f"--reuid={SUDO_USER}", f"--regid={SUDO_USER}", "--clear-groups",
        "test", flag, path, check=False).returncode != 0]


def known_names() -> list[str]:
    hosts = LAB_DIR / "hosts"
    if not hosts.exists():
        return []
    return sorted((p.name for p in hosts.iterdir()), key=lambda s: int(s.split("h")[-1]))



def reset_ufw(name: str) -> None:
    """Put a host's UFW back to a fresh install: files from the packages, and no ufw
    chains in the kernel (``ufw disable`` leaves its empty chains behind)."""
    exec_in(name, "sh", "-c", "ufw --force disable >/dev/null; "
                              "for t in iptables ip6tables; do $t -F; $t -X; done")
    pristine, hd = LAB_DIR / "pristine", LAB_DIR / "hosts" / name
    for f in (pristine / "etc-ufw").glob("*.rules"):
        shutil.copy(f, hd / "etc-ufw" / f.name)
    shutil.copy(pristine / "etc-ufw/ufw.conf", hd / "etc-ufw/ufw.conf")
    shutil.copy(pristine / "default-ufw", hd / "default-ufw")

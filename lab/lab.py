#!/usr/bin/env python3
"""A lab fleet of froxlor-like hosts on one Linux machine (run as root).

    python3 lab/lab.py up N     # create N hosts (idempotent), write inventory + group data
    python3 lab/lab.py status   # list hosts and whether sshd / proftpd answer
    python3 lab/lab.py down     # remove every namespace, link, process and file it made

Each host is its own network namespace (own netfilter tables: UFW there filters only
that host), mount, UTS and PID namespace, held by one long-lived process. It gets
private copies of /etc/ufw, /etc/default/ufw, /etc/proftpd, /etc/hosts,
/etc/resolv.conf, the account files (a non-root user ``fleet`` with passwordless sudo,
next to root) and a private /run, made from the packages' pristine files, a real
sshd (key-only, a key generated here) and a real proftpd. /usr/bin/systemctl is
masked so hosts look like non-systemd servers. Hosts sit on a bridge with the
control side (10.213.77.1 and fd00:213:77::1, IPv4 and IPv6); there is no default
route and no reachable resolver.

Nothing here touches the machine's own firewall (root namespace) or /etc/ufw.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported
import froxlor_proftpd

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
PREFIX = os.environ.get("LAB_PREFIX", "fxl")  # names: fxl-br, fxl-h1 (netns), fxl-v1 (veth)
SUBNET = os.environ.get("LAB_SUBNET", "10.213.77")
BRIDGE = f"{PREFIX}-br"
CONTROL_IP = f"{SUBNET}.1"
V6_PREFIX = "fd00:{}:{}::".format(*SUBNET.split(".")[1:3])  # a ULA /64 per lab
CONTROL_IP6 = f"{V6_PREFIX}1"
SUDO_USER = "fleet"  # non-root login with passwordless sudo, on every host
PACKAGES = ["iproute2", "openssh-server", "openssh-client", "ufw", "proftpd-basic",
            "iptables", "util-linux", "procps", "sudo", "openssl"]

# Roles of the example fleet, repeated as the lab grows: like a real froxlor fleet.
HOST_PATTERN = [
    ("web", ["web_servers", "ftp_servers"]),
    ("web", ["web_servers", "ftp_servers"]),
    ("mail", ["mail_servers"]),
    ("dns", ["dns_servers"]),
    ("db", ["db_servers"]),
]

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
: > /run/lab-ssh-commands.log; chmod 666 /run/lab-ssh-commands.log  # root and the sudo user log
[ -e /usr/bin/systemctl ] && mount --bind /dev/null /usr/bin/systemctl
hostname "$name"
ip link set lo up
exec python3 -c "$3"
"""


def die(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr)
    sys.exit(1)


def run(*args: str, check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(args, text=True, capture_output=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {(res.stderr or res.stdout).strip()}")
    return res


def preflight() -> None:
    if not sys.platform.startswith("linux"):
        die("the lab needs Linux (network, mount and PID namespaces)")
    if os.geteuid() != 0:
        die("the lab needs root (it creates network namespaces); run it with sudo or as root")


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


def host_names(n: int) -> list[str]:
    return [f"lab-h{i}" for i in range(1, n + 1)]


def host_ip(i: int) -> str:
    return f"{SUBNET}.{10 + i}"


def host_ip6(i: int) -> str:
    return f"{V6_PREFIX}{10 + i}"


def ensure_key(lab_dir: Path = LAB_DIR) -> Path:
    """The lab's SSH key (made once per lab folder; lab/systemd_hosts.py passes its own)."""
    for name, text in (("logging-shell.sh", LOGGING_SHELL), ("login-shell.sh", LOGIN_SHELL)):
        shell = lab_dir / name
        shell.write_text(text)
        shell.chmod(0o755)
    key = lab_dir / "id_ed25519"
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "froxlor-fleet-lab", "-f", str(key))
    return key


# Every command that arrives over SSH is logged to the host's /run before it runs, so
# the benchmark counts what really crossed SSH (one line per command).
COMMAND_LOG = "/run/lab-ssh-commands.log"
HIDE_SESSION = "/run/lab-hide-session"
# The login shell of root and the sudo user on lab hosts (sshd runs every command
# through it). A test can hide the session, as some jump hosts and su setups do: the
# shell then replaces itself (exec: same process) without $SSH_CONNECTION, so no
# process of the session carries it.
LOGIN_SHELL = f"""#!/bin/sh
if [ -e {HIDE_SESSION} ]; then exec env -u SSH_CONNECTION -u SSH_CLIENT /bin/sh "$@"; fi
exec /bin/sh "$@"
"""
LOGGING_SHELL = f"""#!/bin/sh
cmd=${{SSH_ORIGINAL_COMMAND:-}}
printf '%s\\n' "$(printf '%s' "${{cmd:-(login shell)}}" | tr '\\n' ' ' | cut -c1-400)" >> {COMMAND_LOG}
case "$cmd" in
  "") exec /bin/sh -l ;;
  sftp|internal-sftp) exec /usr/lib/openssh/sftp-server ;;
  *) exec /bin/sh -c "$cmd" ;;
esac
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
    shutil.copy(LAB_DIR / "id_ed25519.pub", hd / "authorized_keys")
    (hd / "sshd_config").write_text(
        f"ListenAddress {host_ip(i)}\nListenAddress {host_ip6(i)}\nPort 22\n"
        f"HostKey {hd}/ssh_host_ed25519_key\n"
        f"AuthorizedKeysFile {hd}/authorized_keys\nPidFile /run/sshd.pid\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxStartups 200\n"
        "MaxSessions 50\nSubsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n"
        f"ForceCommand {LAB_DIR / 'logging-shell.sh'}\n")
    return hd


def write_accounts(hd: Path) -> None:
    """The machine's accounts plus the lab's sudo user, private to the host (the host
    shares /usr with the machine, not these files): root login is not the only way in."""
    login = str(LAB_DIR / "login-shell.sh")  # /bin/sh underneath, see LOGIN_SHELL
    sudo_line = f"{SUDO_USER}:x:4242:4242:froxlor-fleet lab:/tmp:{login}\n"
    # root logs in with /bin/sh too, not bash: this machine's root ~/.bashrc (bash reads
    # it for sshd commands) may do slow things such as `pyenv rehash`, whose lock a test
    # that kills sessions can leave behind, stalling every later login for a minute.
    accounts = "".join(
        (":".join(line.split(":")[:6] + [login]) if line.startswith("root:") else line) + "\n"
        for line in Path("/etc/passwd").read_text().splitlines())
    (hd / "passwd").write_text(accounts + sudo_line)
    (hd / "group").write_text(Path("/etc/group").read_text() + f"{SUDO_USER}:x:4242:\n")
    (hd / "shadow").write_text(Path("/etc/shadow").read_text() + f"{SUDO_USER}:*:19000:0:99999:7:::\n")
    (hd / "shadow").chmod(0o640)
    (hd / "sudoers.d").mkdir()
    (hd / "sudoers.d/lab").write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD:ALL\n")
    (hd / "sudoers.d/lab").chmod(0o440)


def holder_pid(name: str) -> int | None:
    pidfile = LAB_DIR / "hosts" / name / "holder.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def nsenter(name: str, *cmd: str) -> list[str]:
    pid = holder_pid(name)
    if not pid:
        raise RuntimeError(f"{name} is not running")
    return ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--", *cmd]


def ensure_bridge(bridge: str = BRIDGE, control_ip: str = CONTROL_IP,
                  control_ip6: str = CONTROL_IP6) -> None:
    """The lab bridge with the control side's addresses (lab/systemd_hosts.py passes its own)."""
    if run("ip", "link", "show", bridge, check=False).returncode != 0:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "addr", "add", f"{control_ip}/24", "dev", bridge)
        run("ip", "-6", "addr", "add", f"{control_ip6}/64", "dev", bridge, "nodad")
    run("ip", "link", "set", bridge, "up")


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
                 "sh", "-c", HOST_SETUP, "lab-host", str(hd), name, REAPER],
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
    start_services(name, hd)


def start_services(name: str, hd: Path) -> None:
    if run(*nsenter(name, "sh", "-c", "[ -s /run/sshd.pid ] && kill -0 $(cat /run/sshd.pid)"),
           check=False).returncode != 0:
        run(*nsenter(name, "/usr/sbin/sshd", "-f", str(hd / "sshd_config")))
    if run(*nsenter(name, "sh", "-c", "[ -s /run/proftpd.pid ] && kill -0 $(cat /run/proftpd.pid)"),
           check=False).returncode != 0:
        run(*nsenter(name, "/usr/sbin/proftpd"))


def wait_ssh(ips: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ips)
    while pending and time.monotonic() < deadline:
        for ip in list(pending):
            try:
                with socket.create_connection((ip, 22), timeout=1):
                    pending.discard(ip)
            except OSError:
                pass
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"sshd did not answer on {', '.join(sorted(pending))}")


def write_inventory(n: int) -> None:
    key = LAB_DIR / "id_ed25519"
    known = LAB_DIR / "known_hosts"
    lines = []
    for i, name in enumerate(host_names(n), 1):
        kind, key_text = (LAB_DIR / "hosts" / name / "ssh_host_ed25519_key.pub").read_text().split(" ")[:2]
        lines += [f"{host_ip(i)} {kind} {key_text}\n", f"{host_ip6(i)} {kind} {key_text}\n"]
    known.write_text("".join(lines))
    groups: dict[str, list[str]] = {}
    hosts = []
    for i, name in enumerate(host_names(n), 1):
        kind, member_of = HOST_PATTERN[(i - 1) % len(HOST_PATTERN)]
        hosts.append({"name": name, "ip": host_ip(i), "ip6": host_ip6(i), "kind": kind})
        for group in member_of:
            groups.setdefault(group, []).append(name)
    lines = ['"""Lab fleet inventory, generated by lab/lab.py up: do not edit."""', "",
             "from froxlor_fleet.fleetcheck import check_fleet", ""]
    addr = {h["name"]: h["ip"] for h in hosts}
    for group, members in groups.items():
        entries = ", ".join(f'("{m}", {{"ssh_hostname": "{addr[m]}"}})' for m in members)
        lines.append(f"{group} = [{entries}]")
    lines += ["", "check_fleet(__file__)", ""]
    (LAB_DIR / "inventory.py").write_text("\n".join(lines))
    gd = LAB_DIR / "group_data"
    gd.mkdir(exist_ok=True)
    web_ips = [addr[m] for m in groups.get("web_servers", [])] or [CONTROL_IP]
    files = {
        "all.py": (f'ssh_user = "root"\nssh_key = "{key}"\nssh_known_hosts_file = "{known}"\n'
                   'ssh_strict_host_key_checking = "yes"\nssh_connect_timeout = 5\n'),
        "web_servers.py": 'froxlor_roles = ["web"]\n',
        "ftp_servers.py": 'froxlor_roles = ["ftp"]\nftp_passive_ports = (50000, 50100)\n',
        "mail_servers.py": 'froxlor_roles = ["mail", "pop3"]\n',
        "dns_servers.py": 'froxlor_roles = ["dns"]\n',
        # Only the web servers may reach MySQL; the control side may not.
        "db_servers.py": f'froxlor_roles = ["mysql"]\nmysql_allowed_sources = {web_ips!r}\n',
    }
    for fname, text in files.items():
        (gd / fname).write_text("# Lab fleet group data, generated by lab/lab.py up.\n" + text)
    (LAB_DIR / "lab.json").write_text(json.dumps(
        {"control_ip": CONTROL_IP, "control_ip6": CONTROL_IP6, "bridge": BRIDGE,
         "sudo_user": SUDO_USER, "hosts": hosts, "groups": groups}, indent=1))


def up(n: int) -> None:
    preflight()
    if LAB_DIR.resolve().is_relative_to("/run"):
        die(f"LAB_DIR {LAB_DIR} must not be under /run (each host gets a private /run)")
    if not 1 <= n <= 200:
        die("N must be between 1 and 200")
    ensure_packages()
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    info = LAB_DIR / "lab.json"
    current = len(json.loads(info.read_text())["hosts"]) if info.exists() else 0
    if current > n:
        down()
        LAB_DIR.mkdir(parents=True, exist_ok=True)
    try:
        tree = pristine_tree()
        ensure_key()
        ensure_bridge()
        for i, name in enumerate(host_names(n), 1):
            start_host(i, name, write_host_files(i, name, tree))
        wait_ssh([host_ip(i) for i in range(1, n + 1)] + [host_ip6(i) for i in range(1, n + 1)])
        write_inventory(n)
    except Exception as e:  # clean up what we made, then report one line
        down(quiet=True)
        die(f"up failed, lab removed: {e}")
    print(f"lab: {n} host(s) up on {BRIDGE} ({SUBNET}.0/24); inventory: {LAB_DIR / 'inventory.py'}")


def known_names() -> list[str]:
    hosts = LAB_DIR / "hosts"
    if not hosts.exists():
        return []
    return sorted((p.name for p in hosts.iterdir()), key=lambda s: int(s.split("h")[-1]))


def down(quiet: bool = False) -> None:
    preflight()
    for name in known_names():
        for pidfile in ("holder.pid", "unshare.pid"):
            try:  # PID 1 of the host: killing it ends every process in that host
                pid = int((LAB_DIR / "hosts" / name / pidfile).read_text())
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
    netns = run("ip", "netns", "list", check=False).stdout.split("\n")
    for line in netns:
        ns = line.split(" ")[0]
        if ns.startswith(f"{PREFIX}-h"):
            run("ip", "netns", "del", ns, check=False)
    links = run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        dev = line.split(":")[1].strip().split("@")[0]
        if dev == BRIDGE or dev.startswith(f"{PREFIX}-v"):
            run("ip", "link", "del", dev, check=False)
    if LAB_DIR.exists():
        shutil.rmtree(LAB_DIR)
    if not quiet:
        print("lab: down")


def status() -> None:
    preflight()
    if not (LAB_DIR / "lab.json").exists():
        print("lab: not up")
        return
    info = json.loads((LAB_DIR / "lab.json").read_text())
    for h in info["hosts"]:
        up_ = holder_pid(h["name"]) is not None
        ports = []
        for port in (22, 21):
            try:
                with socket.create_connection((h["ip"], port), timeout=1):
                    ports.append(f"{port}:open")
            except OSError:
                ports.append(f"{port}:closed")
        state = "running" if up_ else "STOPPED"
        print(f"{h['name']:10} {h['ip']:15} {h['kind']:5} {state} {' '.join(ports)}")


CHECK_PORTS = [("ssh", 22), ("ftp", 21), ("http", 80), ("https", 443), ("smtp", 25),
               ("smtps", 465), ("submission", 587), ("imap", 143), ("imaps", 993),
               ("pop3", 110), ("pop3s", 995), ("dns", 53), ("mysql", 3306), ("passive", 50050)]


def probe(ip: str, port: int, timeout: float = 1.5) -> str:
    """open: something answered; closed: firewall admits, nothing listens (RST);
    blocked: no answer (UFW drops it)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError:
        return "blocked"


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


def exec_in(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command inside lab host ``name`` (as its root, like a console login)."""
    return run(*nsenter(name, *cmd), check=check)


def check() -> None:
    """Per-host UFW result and a TCP port check from the control side."""
    from concurrent.futures import ThreadPoolExecutor

    preflight()
    if not (LAB_DIR / "lab.json").exists():
        die("lab is not up")
    info = json.loads((LAB_DIR / "lab.json").read_text())
    hosts = info["hosts"]
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = {(h["name"], port): pool.submit(probe, h["ip"], port)
                   for h in hosts for _, port in CHECK_PORTS}
        mark = {"open": "open", "closed": "adm", "blocked": "-"}
        print(f"{'host':9} {'kind':5} {'ufw':8} " + " ".join(f"{p:>5}" for _, p in CHECK_PORTS))
        for h in hosts:
            status = exec_in(h["name"], "ufw", "status", check=False).stdout
            active = "active" if "Status: active" in status else "inactive"
            cells = [mark[results[(h["name"], p)].result()] for _, p in CHECK_PORTS]
            print(f"{h['name']:9} {h['kind']:5} {active:8} " + " ".join(f"{c:>5}" for c in cells))
    print("open: a service answered; adm: the firewall admits it (nothing listens); "
          "-: blocked (no answer)")


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "up" and argv[1].isdigit():
        up(int(argv[1]))
    elif argv == ["down"]:
        down()
    elif argv == ["status"]:
        status()
    elif argv == ["check"]:
        check()
    else:
        die("usage: lab.py up N | down | status | check")


if __name__ == "__main__":
    main(sys.argv[1:])

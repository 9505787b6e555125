"""How the lab logs in: its SSH key, the login and logging shells (every command that
arrives over SSH is logged in the host's /run), and the accounts of a namespace host
(root and the sudo user).

What a namespace host's logins open as the logged-in user (the login shell, the forced
command, the authorized keys: sshd reads them as the user) lives in LOGIN_DIR, in the
host's own /run (root's, mode 0755, gone with the host), never under LAB_DIR: a clone in
root's home (/root is 0700 on Debian) puts LAB_DIR out of the sudo user's reach."""

from __future__ import annotations

from pathlib import Path

from lab.common import run
from lab.config import LAB_DIR, SUDO_USER

# Every command that arrives over SSH is logged to the host's /run before it runs, so
# the benchmark counts what really crossed SSH (one line per command).
COMMAND_LOG = "/run/lab-ssh-commands.log"
HIDE_SESSION = "/run/lab-hide-session"
# Inside each namespace host (lab/netns_hosts.py installs it from the host's login/ folder).
LOGIN_DIR = "/run/froxlor-fleet-lab"
LOGIN_SHELL_PATH = f"{LOGIN_DIR}/login-shell.sh"
LOGGING_SHELL_PATH = f"{LOGIN_DIR}/logging-shell.sh"
AUTHORIZED_KEYS_PATH = f"{LOGIN_DIR}/authorized_keys"
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


def ensure_key(lab_dir: Path = LAB_DIR) -> Path:
    """The lab's SSH key (made once per lab folder; lab/systemd_hosts.py passes its own)."""
    key = lab_dir / "id_ed25519"
    if not key.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "froxlor-fleet-lab", "-f", str(key))
    return key


def write_login_files(hd: Path, pubkey: str) -> None:
    """A namespace host's login/ folder: what its set-up installs into LOGIN_DIR."""
    login = hd / "login"
    login.mkdir()
    for name, text in (("logging-shell.sh", LOGGING_SHELL), ("login-shell.sh", LOGIN_SHELL),
                       ("authorized_keys", pubkey)):
        (login / name).write_text(text)


def write_accounts(hd: Path) -> None:
    """The machine's accounts plus the lab's sudo user, private to the host (the host
    shares /usr with the machine, not these files): root login is not the only way in."""
    login = LOGIN_SHELL_PATH  # /bin/sh underneath, see LOGIN_SHELL
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

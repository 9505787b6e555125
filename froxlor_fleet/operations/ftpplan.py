"""The FTP side of one host's run, decided once: which daemon the ftp role manages (or
why none can be), what that daemon should be given (ProFTPd's fragment, pure-ftpd's
files), the host program's FTP part and the passive-range switch.

The deploy makes it once per host and run (``plan_ftp``) and hands it to every
operation that needs it: the UFW operation (the refusal, which fails the host before
anything changes; the part it carries in the host's transaction; the old range it keeps
open) and the FTP daemon's operation (the same part). ``ready_for_ftp``, for deploys of
your own, says the same from the same functions. The audit asks ``daemon_for`` once per
host, and what each daemon should have. Used on their own, the operations decide from
their arguments with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from jinja2 import Environment, StrictUndefined, Template

from ..facts import HostState
from ..ftpconf.daemon import DaemonChoice, choose_daemon
from ..ftpconf.judge import conflicts as proftpd_conflicts
from ..model.catalog import FRAGMENT_PATH, LOADED_MARKER, PUREFTPD_LOADED_MARKER
from ..model.plan import HostPlan, RuleSpec
from ..remote.ftpapply import proftpd_digest, pureftpd_digest
from .passive_switch import Switch, plan_switch, with_keep

TEMPLATE = "proftpd-passive-ports.conf.j2"
PUREFTPD_CONF_DIR = "/etc/pure-ftpd/conf"
PUREFTPD_MASQUERADE = ("pure-ftpd's ForcePassiveIP takes an IPv4 address or a DNS name (PASV "
                       "replies carry IPv4 only), not {!r}; set ftp_masquerade_address to one")
PROFTPD_WOULD_NOT_USE = ("ProFTPd would not use this deploy's passive ports, so UFW and ProFTPd "
                         "would disagree; nothing was changed on this host: ")


@dataclass(frozen=True)
class FtpPlan:
    """``FtpPlan(daemon="proftpd", refusal=None, fragment="# Managed by ...",
    part={"daemon": "proftpd", ...}, switch=Switch(...))``"""

    daemon: str | None  # "proftpd"/"pureftpd"; None: no ftp role, or none can be served
    refusal: str | None  # why the ftp role cannot be served (the UFW operation fails the host)
    fragment: str | None  # ProFTPd's fragment as wanted (None: none, or pure-ftpd's host)
    part: dict[str, object] | None  # the host program's FTP part; None: nothing to change
    switch: Switch | None  # a passive-range change (passive_switch)

    @property
    def keep(self) -> tuple[RuleSpec, ...]:
        """The old range's rule, open until the daemon has switched."""
        return self.switch.keep if self.switch else ()


def daemon_for(plan: HostPlan, current: HostState) -> DaemonChoice:
    """The daemon the ftp role manages on this host, or why none can be
    (``ftpconf.daemon.choose_daemon``); a host without the ftp role: neither."""
    if plan.passive_ports is None:
        return DaemonChoice(None, None)
    return choose_daemon(current.ftp, plan.ftp_daemon)


def refusal_for(current: HostState, daemon: str | None, passive_ports: tuple[int, int] | None,
                masquerade_address: str | None, path: str = FRAGMENT_PATH) -> str | None:
    """Why ``daemon``, the one chosen, would not serve the ftp role as this deploy sets it
    up, or ``None``: pure-ftpd given an IPv6 ``ForcePassiveIP``, a ProFTPd that would
    not use the fragment (an admin's ``PassivePorts`` in proftpd.conf, an earlier
    conf.d file, a ``<VirtualHost>`` of its own...)."""
    if passive_ports is None or daemon is None:
        return None
    if daemon == "pureftpd":
        if masquerade_address and ":" in masquerade_address:
            return PUREFTPD_MASQUERADE.format(masquerade_address)
        return None
    problems = proftpd_conflicts(current.ftp, path, passive_ports, masquerade_address)
    return PROFTPD_WOULD_NOT_USE + " | ".join(problems) if problems else None


def plan_ftp(plan: HostPlan, current: HostState) -> FtpPlan:
    """The FTP side of this host's run (see the module docstring). Without a daemon
    (no ftp role, or none can be served) it is ProFTPd's fragment: a leftover one is
    removed, and a refused host fails before anything changes."""
    daemon, refusal = daemon_for(plan, current)
    refusal = refusal or refusal_for(current, daemon, plan.passive_ports, plan.masquerade_address)
    fragment = None
    if daemon == "pureftpd" and plan.passive_ports is not None:
        files = pureftpd_files(plan.passive_ports, plan.masquerade_address)
        part = pureftpd_part(current, files)
    else:
        fragment = fragment_for(plan)
        part = fragment_part(current, fragment)
    # A range change: the old range stays open until the daemon has switched (see
    # passive_switch.py); UFW and the FTP daemon never offer different ranges.
    switch = plan_switch(plan, current, part is not None, daemon or "proftpd")
    return FtpPlan(daemon, refusal, fragment, with_keep(part, switch), switch)


# --- ProFTPd: the passive-port fragment ---------------------------------------------------
#
# froxlor rewrites ``proftpd.conf`` itself and includes ``conf.d/``, so the fragment
# lives in its own file there.

@cache
def _template() -> Template:
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    source = resources.files("froxlor_fleet").joinpath("templates").joinpath(TEMPLATE).read_text()
    return env.from_string(source)


def render_fragment(passive_ports: tuple[int, int], masquerade_address: str | None = None) -> str:
    """The fragment text for ``passive_ports`` (and optional ``MasqueradeAddress``)."""
    return _template().render(
        low=passive_ports[0], high=passive_ports[1], masquerade_address=masquerade_address,
        path=FRAGMENT_PATH,
    )


def fragment_for(plan: HostPlan) -> str | None:
    """The fragment a ``HostPlan`` wants, or ``None`` (not an ftp host: no fragment)."""
    return render_fragment(plan.passive_ports, plan.masquerade_address) if plan.passive_ports else None


def fragment_digest(content: str | None) -> str | None:
    """sha256 of the fragment's bytes, as the state fact reports it (``None``: absent)."""
    return proftpd_digest(content) if content is not None else None


def fragment_loaded(current: HostState, content: str | None) -> bool:
    """Is ``content`` what ProFTPd runs with? A stopped ProFTPd reads the file when it
    starts; a running one has loaded it if this deploy's marker says so (a restart
    that failed, or a run cut short, leaves the marker behind the file)."""
    if content is None or "proftpd" not in current.ftp.running:
        return True
    return current.fragment_loaded == fragment_digest(content)


def fragment_part(current: HostState, content: str | None,
                  path: str = FRAGMENT_PATH) -> dict[str, object] | None:
    """The host program's FTP part for this fragment, or ``None``: already in place and
    loaded. Without ProFTPd, a fragment to remove is only removed. A range switch adds
    the range to keep open (``passive_switch.with_keep``)."""
    if fragment_digest(content) == current.fragment_sha256 and fragment_loaded(current, content):
        return None
    if content is None and "proftpd" not in current.ftp.installed:
        return {"daemon": "none", "path": path, "marker": LOADED_MARKER, "keep": []}
    return {"daemon": "proftpd", "path": path, "content": content, "marker": LOADED_MARKER,
            "keep": []}


# --- pure-ftpd: its passive range, one option per file ------------------------------------
#
# ``/etc/pure-ftpd/conf/PassivePortRange`` (and ``ForcePassiveIP``), as Debian's wrapper
# reads them. froxlor writes pure-ftpd's other options there but no passive range.

def pureftpd_files(passive_ports: tuple[int, int], force_passive_ip: str | None) -> dict[str, str | None]:
    """File name -> first line (``None``: no such file), as the dump reports them."""
    return {"PassivePortRange": f"{passive_ports[0]} {passive_ports[1]}",
            "ForcePassiveIP": force_passive_ip}


def pureftpd_files_now(current: HostState) -> dict[str, str | None]:
    """pure-ftpd's files on the host, as ``pureftpd_files`` names them."""
    pure = current.ftp.pureftpd
    return {"PassivePortRange": pure.passive_port_range_raw, "ForcePassiveIP": pure.force_passive_ip}


def pureftpd_files_digest(files: dict[str, str | None]) -> str:
    """sha256 of what pure-ftpd runs with, as the host program writes it to the marker
    (``ftpapply.pureftpd_digest``)."""
    if files.get("PassivePortRange") is None:
        return ""  # no range: nothing pure-ftpd can have loaded from this deploy
    return pureftpd_digest(str(files["PassivePortRange"]), files.get("ForcePassiveIP"))


def pureftpd_loaded(current: HostState, files: dict[str, str | None]) -> bool:
    """Does pure-ftpd run with ``files``? A stopped one reads them when it starts; a
    running one has loaded them if this deploy's marker says so."""
    if "pureftpd" not in current.ftp.running:
        return True
    return current.pureftpd_loaded == pureftpd_files_digest(files)


def pureftpd_changes(current: HostState, want: dict[str, str | None]) -> bool:
    """Do pure-ftpd's files or what it has loaded differ from ``want``?"""
    return pureftpd_files_now(current) != want or not pureftpd_loaded(current, want)


def pureftpd_part(current: HostState, want: dict[str, str | None]) -> dict[str, object] | None:
    """The host program's FTP part for these files (``pureftpd_files``), or ``None``: on
    disk and loaded (``pureftpd_changes``). A range switch adds the range to keep open
    (``passive_switch.with_keep``)."""
    if not pureftpd_changes(current, want):
        return None
    return {"daemon": "pureftpd", "range": want["PassivePortRange"],
            "force_ip": want["ForcePassiveIP"], "marker": PUREFTPD_LOADED_MARKER, "keep": []}

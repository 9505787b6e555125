"""The ProFTPd passive-port fragment: render, test with ``proftpd -t``, reload.

froxlor rewrites ``proftpd.conf`` itself and includes ``conf.d/``, so the fragment
lives in its own file there. One remote step writes it, tests the whole config,
puts the previous fragment back if the test fails, and reloads only on success.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from jinja2 import Environment, StrictUndefined
from pyinfra import host, logger
from pyinfra.api import OperationError, QuoteString, operation
from pyinfra.operations.util.files import generate_color_diff

from .catalog import FRAGMENT_PATH
from .steps import guarded_step, refuse, show_changes
from .hoststate import host_state
from .proftpd_config import conflicts as ftp_conflicts
from .remote import program

NOOP_MESSAGE = "ProFTPd passive-port fragment already as wanted"
MISSING_PROFTPD = ("the ftp role needs ProFTPd, but 'proftpd' is not installed on this host "
                   "(froxlor uses proftpd-basic); install it first, this deploy does not")
TEMPLATE = "proftpd-passive-ports.conf.j2"

# remote/fragment_apply.sh: write, `proftpd -t`, restore or reload.
APPLY_SCRIPT = program("fragment_apply.sh")


def render_fragment(passive_ports: tuple[int, int], masquerade_address: str | None = None) -> str:
    """The fragment text for ``passive_ports`` (and optional ``MasqueradeAddress``)."""
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    source = resources.files(__package__).joinpath("templates", TEMPLATE).read_text()
    return env.from_string(source).render(
        low=passive_ports[0], high=passive_ports[1], masquerade_address=masquerade_address,
        path=FRAGMENT_PATH,
    )


def fragment_for(plan) -> str | None:
    """The fragment a ``HostPlan`` wants, or ``None`` (not an ftp host: no fragment)."""
    return render_fragment(plan.passive_ports, plan.masquerade_address) if plan.passive_ports else None


def digest(content: str | None) -> str | None:
    """sha256 of the fragment's bytes, as the state fact reports it (``None``: absent)."""
    return hashlib.sha256(content.encode()).hexdigest() if content is not None else None


@operation()
def installed_for_ftp(*, passive_ports: tuple[int, int] | None,
                      masquerade_address: str | None = None):
    """
    Fail the host before anything changes when it has the ftp role but ProFTPd is
    missing, or would not use this deploy's fragment (an admin's ``PassivePorts`` in
    proftpd.conf, an earlier conf.d file, a ``<VirtualHost>`` of its own...).

    + passive_ports: the host's ``(low, high)`` range, ``None``: no ftp role
    + masquerade_address: the fragment's ``MasqueradeAddress``, if any

    Costs no remote command of its own (reads the state the deploy reads anyway).
    This deploy never installs an FTP server unasked and never edits proftpd.conf.

    **Example:**

    .. code:: python

        proftpd.installed_for_ftp(name="ProFTPd ready for ftp", passive_ports=(49152, 65534))
    """
    if passive_ports is None:
        host.noop("no ftp role")
        return
    current = host_state(host)
    if not current.proftpd_installed:
        yield refuse(MISSING_PROFTPD)
        return
    problems = ftp_conflicts(current.ftp, FRAGMENT_PATH, tuple(passive_ports), masquerade_address)
    if problems:
        yield refuse("ProFTPd would not use this deploy's passive ports, so UFW and ProFTPd "
                     "would disagree; nothing was changed on this host: " + " | ".join(problems))
        return
    host.noop("ProFTPd will use the fragment's passive ports")


@operation()
def passive_ports_fragment(content: str | None, path: str = FRAGMENT_PATH):
    """
    Make the ProFTPd fragment at ``path`` exactly ``content``, or remove it (``None``).

    + content: the fragment text (see ``render_fragment``), or ``None`` to remove it
    + path: where it lives; must be under ``/etc/proftpd/conf.d/``

    The config is checked with ``proftpd -t`` before ProFTPd is reloaded (systemd or
    plain init); on failure the previous fragment is put back and the host fails with
    ProFTPd's message. An absent ProFTPd is an error when ``content`` is set: this
    deploy does not install an FTP server unasked.

    **Example:**

    .. code:: python

        proftpd.passive_ports_fragment(
            name="FTP passive ports",
            content=render_fragment((49152, 65534)),
        )
    """
    if not path.startswith("/etc/proftpd/conf.d/") or path.rstrip("/").endswith("conf.d"):
        raise OperationError(f"fragment path {path!r} must be a file in /etc/proftpd/conf.d/")
    current = host_state(host, path)
    if content is not None and not current.proftpd_installed:
        yield refuse(MISSING_PROFTPD)
        return
    if digest(content) == current.fragment_sha256:
        host.noop(NOOP_MESSAGE)
        return

    if show_changes():
        verb = "create" if current.fragment is None else ("remove" if content is None else "modify")
        host.log(f"Will {verb} {path}", logger.info)
        old = (current.fragment or "").splitlines(keepends=True)
        for line in generate_color_diff(old, (content or "").splitlines(keepends=True)):
            logger.info("  %s", line)
        logger.info("")

    if content is None and not current.proftpd_installed:
        yield guarded_step("rm", "-f", QuoteString(path))
        return
    yield guarded_step("sh", "-c", QuoteString(APPLY_SCRIPT), "froxlor-fleet",
                 QuoteString(path), QuoteString(content or ""))

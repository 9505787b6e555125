"""The least a deploy shaped like ours costs pyinfra (bench.py's reference phase): one fact
read per host (the command ``true``) and two operations that change nothing, as the
packaged deploy runs a state read and its UFW and FTP operations. What a no-op run
costs beyond this is the deploy's own work: its state read on the hosts, its planning
on the control node."""

from __future__ import annotations

from collections.abc import Generator

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation


class Nothing(FactBase[list[str]]):
    def command(self) -> StringCommand:
        return StringCommand("true")

    def process(self, output: list[str]) -> list[str]:
        return output


_read: list[list[str]] = []  # this host's read (the file runs once per host)


@operation()
def unchanged(part: str) -> Generator[str, None, None]:
    # one read per host and run, as the deploy's state read (pyinfra would read again
    # when it runs the operations after preparing them)
    if not _read:
        _read.append(host.get_fact(Nothing))
    host.noop(f"{part} already as wanted")
    yield from ()


unchanged(name="UFW", part="UFW")
unchanged(name="FTP", part="FTP")

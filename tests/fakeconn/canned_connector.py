"""A pyinfra connector for tests: hosts ``@canned/<name>`` answer with canned output.

So the audit command runs end to end (pyinfra's inventory loading, config, connect,
fact, disconnect) without SSH and without ever touching this machine. Registered as
the ``canned`` connector (pyinfra has a ``fake`` one of its own) by the
``canned_pyinfra_connector-0.dist-info`` next to this file (on ``PYTHONPATH`` only in
the tests that want it).

``$CANNED_FLEET`` names a JSON file: ``{"web1": {"lines": [...]}}`` answers every command
with those stdout lines; ``{"refuse": "why"}`` fails the connection; ``{"fail": "why"}``
fails every command. Each command is appended to ``$CANNED_FLEET_LOG`` as a JSON line:
host, command, and the sudo/su arguments pyinfra gave it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.connectors.base import BaseConnector
from pyinfra.connectors.util import CommandOutput, OutputLine


class CannedConnector(BaseConnector):
    handles_execution = True

    @staticmethod
    def make_names_data(name: str | None = None):  # type: ignore[override]
        if not name:
            raise InventoryError("use @canned/<name>")
        yield f"@canned/{name}", {}, ["@canned"]

    def _spec(self) -> dict[str, Any]:
        with open(os.environ["CANNED_FLEET"], encoding="utf-8") as handle:
            fleet = json.load(handle)
        return fleet[self.host.name.split("/", 1)[1]]

    def connect(self) -> None:
        spec = self._spec()
        if "refuse" in spec:
            raise ConnectError(spec["refuse"])

    def run_shell_command(self, command, print_output=False, print_input=False,  # type: ignore[override]
                          **arguments: Any):
        spec = self._spec()
        with open(os.environ["CANNED_FLEET_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps({"host": self.host.name, "command": command.get_raw_value(),
                                  "sudo": arguments.get("_sudo"),
                                  "sudo_user": arguments.get("_sudo_user"),
                                  "su_user": arguments.get("_su_user")}) + "\n")
        if "fail" in spec:
            return False, CommandOutput([OutputLine("stderr", spec["fail"])])
        return True, CommandOutput([OutputLine("stdout", line) for line in spec["lines"]])

    def put_file(self, *args: Any, **kwargs: Any) -> bool:  # the audit never writes
        raise AssertionError("the audit must not upload anything")

    def get_file(self, *args: Any, **kwargs: Any) -> bool:
        raise AssertionError("the audit must not download anything")

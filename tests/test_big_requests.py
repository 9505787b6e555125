"""A request of any size reaches the host (issue 22): the kernel refuses a single
argument over 128 KiB (MAX_ARG_STRLEN, E2BIG), which a UFW request once passed at about
400 sources. The commands built by the real operation carry no long argument: the
program's files and the transaction's request travel on stdin
(``test_transaction.py`` runs the real program with a request past the limit).
"""

from __future__ import annotations

import ipaddress
import json
import shlex

from pyinfra.api import FunctionCommand
from pyinfra.api.state import StateStage

from froxlor_fleet.model.plan import RuleSpec
from froxlor_fleet.operations import hostprogram, ufw
from helpers import build_fact, fake_host

MAX_ARG_STRLEN = 131072  # linux/binfmts.h: 32 pages
SOURCES = 2000


def big_rules() -> list[RuleSpec]:
    v4 = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(SOURCES // 2)]
    v6 = [str(ipaddress.IPv6Address((0x20010DB8 << 96) + i)) for i in range(SOURCES // 2)]
    return ([RuleSpec(("22",), "tcp", src, "ssh") for src in v4 + v6]
            + [RuleSpec(("80", "443"), "tcp", None, "web")])


def test_no_argument_of_a_big_change_passes_the_kernels_limit() -> None:
    with fake_host(build_fact({"scenario": "pristine"}), stage=StateStage.Execute):
        commands = list(ufw.rules_and_policies._inner(
            rules=big_rules(), confirm_timeout=60, lockout_guard=False))
    [transaction] = commands  # pristine: the program is placed in the same command
    assert isinstance(transaction, FunctionCommand) and transaction.kwargs["place"]
    for command in (hostprogram.place_and_apply_command(), hostprogram.run_command("apply")):
        words = shlex.split(command.get_raw_value())
        assert max(len(w.encode()) for w in words) < MAX_ARG_STRLEN
    request = json.loads(transaction.args[0])
    assert len(json.dumps(request)) > MAX_ARG_STRLEN  # it would not fit in an argument
    assert len(request["ufw"]["wanted"]) == SOURCES + 1

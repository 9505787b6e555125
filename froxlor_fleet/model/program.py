"""The host program as this package ships it: which files are placed on a host, their
sha256, the version they make and the folder that version gets there.

``remote/fleethost.py`` and the modules it imports go to ``catalog.PROGRAM_DIR/<version>/``
(the version is a hash of their texts). The state fact (``facts.py``) reports what is
placed in that folder; ``operations/hostprogram.py`` places the files when they differ
and runs the transaction from there.
"""

from __future__ import annotations

import hashlib
from functools import cache

from ..remote import program
from .catalog import PROGRAM_DIR

# What is placed: the entry point and every module it imports (nothing else runs).
FILES = ("fleethost.py", "transaction.py", "ufwmodel.py", "ufw_apply.py", "ftpapply.py",
         "commit.py")


@cache
def texts() -> dict[str, str]:
    return {name: program(name) for name in FILES}


@cache
def sums() -> dict[str, str]:
    """File name -> sha256 of its text, as ``sha256sum`` prints them on the host."""
    return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts().items()}


@cache
def version() -> str:
    joined = "".join(f"{name} {digest}\n" for name, digest in sorted(sums().items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def folder() -> str:
    return f"{PROGRAM_DIR}/{version()}"

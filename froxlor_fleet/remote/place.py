"""Place the host program, then run its transaction, ON THE MANAGED HOST: one remote
command for a host that does not have this version yet (``operations/hostprogram.py``).

Not a file on the host (it is what puts the files there): the control side runs its
text as ``python3 -I -S -c TEXT FOLDER "SHA256  NAME"...`` under ufw's interpreter, with
stdin = one line of JSON ``{name: text}`` (the files), then the request as
``fleethost.py apply`` reads it. Every text must have the sha256 the command line names
(both come from the control side: this catches a damaged or mixed-up transfer), or
nothing is placed and nothing runs. A copy already in FOLDER with those sums stays (a
transaction may be running from it); otherwise the files go into a new root-only folder
beside it and replace the old one with one rename. What then runs is the placed
``fleethost.py``, as a later run starts it.

stdlib only, Python 3.7+ syntax, nothing from typing (each host process pays for what
it loads).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: true)
if TYPE_CHECKING:
    from typing import Dict, List

EXIT_REFUSED = 65  # EX_DATAERR: the texts are not what the sums name


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _private(path: str, kind: int) -> bool:
    """Is ``path`` a ``kind`` (stat.S_IFDIR/S_IFREG, not a link) of ours that nobody else
    may write? (the state fact's "unsafe" test: owner root, no group/other write)"""
    st = os.lstat(path)
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def intact(folder: str, sums: Dict[str, str]) -> bool:
    """Does ``folder`` hold exactly these programs with these sums, writable by root
    only? (as the state fact reads it: ``*.py``; the ``__pycache__`` Python writes beside
    them is its own). A copy anyone else could have written is placed anew."""
    try:
        if not _private(folder, stat.S_IFDIR):
            return False
        if sorted(n for n in os.listdir(folder) if n.endswith(".py")) != sorted(sums):
            return False
        for name, digest in sums.items():
            path = os.path.join(folder, name)
            if not _private(path, stat.S_IFREG):
                return False
            with open(path, "rb") as f:
                if _digest(f.read()) != digest:
                    return False
    except OSError:
        return False
    return True


def place(folder: str, sums: Dict[str, str], texts: Dict[str, bytes]) -> bool:
    """Put ``texts`` into ``folder`` unless an intact copy is there; True: placed now."""
    base = os.path.dirname(folder)
    os.makedirs(base, mode=0o700, exist_ok=True)
    for path in (os.path.dirname(base), base):
        os.chmod(path, 0o700)
    # one placer at a time (two runs at once: the second keeps the first one's copy)
    with open(os.path.join(base, ".place.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if intact(folder, sums):
            return False
        new = tempfile.mkdtemp(prefix=".new.", dir=base)
        try:
            for name, data in texts.items():
                fd = os.open(os.path.join(new, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(new, folder)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
    return True


def main(argv: List[str]) -> int:
    os.umask(0o077)
    folder = argv[0]
    sums = {}
    for line in argv[1:]:
        digest, _, name = line.partition("  ")
        sums[name] = digest
    head, _, request = sys.stdin.buffer.read().partition(b"\n")
    try:
        texts = {name: text.encode("utf-8") for name, text in json.loads(head.decode("utf-8")).items()}
    except (ValueError, AttributeError) as e:
        print("froxlor-fleet: the host program arrived damaged (%s): nothing placed" % e, flush=True)
        return EXIT_REFUSED
    if sorted(texts) != sorted(sums) or any(_digest(texts[n]) != d for n, d in sums.items()):
        print("froxlor-fleet: the host program arrived damaged (its files do not match their "
              "sha256): nothing placed", flush=True)
        return EXIT_REFUSED
    if place(folder, sums, texts):
        print("froxlor-fleet: host program placed in %s" % folder, flush=True)
    import runpy

    host = runpy.run_path(os.path.join(folder, "fleethost.py"), run_name="froxlor_fleet_placed")
    return int(host["main"](["apply"], request))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The host program's placement (``hostprogram.PLACE``) run for real in a temp folder:
the files arrive intact and private, a copy in place stays put (two runs placing at
once must not pull it from under a running transaction), a damaged one is replaced,
and a tampered archive is refused."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

from froxlor_fleet import hostprogram


def place(folder: Path, archive: str | None = None, sums: list[str] | None = None
          ) -> subprocess.CompletedProcess:
    lines = sums or [f"{digest}  {name}" for name, digest in sorted(hostprogram.sums().items())]
    return subprocess.run(["sh", "-c", hostprogram.PLACE, "froxlor-fleet", str(folder), *lines],
                          input=archive or hostprogram._archive(), text=True, capture_output=True,
                          timeout=60)


def test_the_program_is_placed_intact_and_private(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "program" / hostprogram.version()
    done = place(folder)
    assert done.returncode == 0, done.stderr
    for name, text in hostprogram.texts().items():
        assert (folder / name).read_text() == text
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert folder.parent.stat().st_mode & 0o777 == 0o700
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".new")]


def test_a_copy_in_place_stays_and_a_damaged_one_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "program" / hostprogram.version()
    assert place(folder).returncode == 0
    inode = folder.stat().st_ino
    assert place(folder).returncode == 0
    assert folder.stat().st_ino == inode  # kept: a transaction may run from it
    (folder / "commit.py").write_text("tampered\n")
    assert place(folder).returncode == 0
    assert (folder / "commit.py").read_text() == hostprogram.texts()["commit.py"]


def test_an_archive_that_does_not_match_the_sums_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "program" / hostprogram.version()
    wrong = [f"{hashlib.sha256(b'x').hexdigest()}  fleethost.py"]
    done = place(folder, sums=wrong)
    assert done.returncode != 0
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".new")]


def test_the_archive_is_what_the_sums_name() -> None:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(hostprogram._archive()))) as tar:
        names = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                 for m in tar.getmembers()}
    assert names == hostprogram.sums()
    assert set(names) == set(hostprogram.FILES)
    assert os.path.basename(hostprogram.folder()) == hostprogram.version()

"""The package as a user gets it: build the wheel from this tree (isolated build, as pip
does), install it into a fresh virtualenv, and use it from another directory.

Needs the package index (pyinfra and the build backend are fetched); marked
``packaging`` so the pyinfra-range runs in .ci/run can leave it out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.packaging

# What a clean clone has: leave out local state (venvs, labs, caches, builds).
IGNORE = shutil.ignore_patterns(".git", ".venv", ".lab*", "build", "dist", "*.egg-info",
                                "__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache",
                                ".ruff_cache")


def run(*args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**environ, **env})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(wheel, build log) from a copy of this tree."""
    base = tmp_path_factory.mktemp("pkg")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE, symlinks=True)
    res = run(sys.executable, "-m", "pip", "wheel", "-v", "--no-deps",
              "--disable-pip-version-check", "-w", base / "dist", src, cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    yield next((base / "dist").glob("froxlor_fleet-*.whl")), res.stdout + res.stderr


@pytest.fixture(scope="module")
def installed(built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel (and its dependencies) installed; its bin/."""
    venv = tmp_path_factory.mktemp("venv")
    assert run(sys.executable, "-m", "venv", venv, cwd=venv).returncode == 0
    res = run(venv / "bin" / "python", "-m", "pip", "install", "-q",
              "--disable-pip-version-check", built[0], cwd=venv)
    assert res.returncode == 0, res.stdout + res.stderr
    return venv / "bin"


def test_build_has_no_setuptools_warnings(built: tuple[Path, str]) -> None:
    _, log = built
    # pip's notes about this machine's mirrors, and $PYTHONDONTWRITEBYTECODE's
    harmless = ("Location 'file:", "byte-compiling is disabled")
    warnings = [line for line in log.splitlines()
                if re.search(r"warn", line, re.I) and not any(h in line for h in harmless)]
    assert warnings == [], "\n".join(warnings)


def test_wheel_contents(built: tuple[Path, str]) -> None:
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("froxlor_fleet/templates/proftpd-passive-ports.conf.j2",
                   "froxlor_fleet/audit/audit.schema.json", "froxlor_fleet/audit/cli.py",
                   "froxlor_fleet/py.typed", "froxlor_fleet/remote/state.sh",
                   "froxlor_fleet/remote/ufw_apply.py", "froxlor_fleet/cli.py",
                   "froxlor_fleet/model/loading.py"):
        assert needed in names, needed
    remote = {p.name for p in (ROOT / "froxlor_fleet" / "remote").iterdir() if p.is_file()
              and not p.name.endswith(".pyc")}
    assert {f"froxlor_fleet/remote/{n}" for n in remote} <= names  # every host-side program
    assert not [n for n in names if n.startswith(("tests/", "lab/", "bench/", "scripts/"))]
    assert not [n for n in names if "__pycache__" in n]
    assert any(re.fullmatch(r"froxlor_fleet-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)


def test_wheel_metadata(built: tuple[Path, str]) -> None:
    wheel, _ = built
    archive = zipfile.ZipFile(wheel)
    info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(archive.read(info).decode())
    from froxlor_fleet import __version__

    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "MIT"
    assert "pyinfra<4,>=3.8" in meta.get_all("Requires-Dist")
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]
    # Python versions claimed: exactly the interpreter the tests run on (CI runs one)
    claimed = {c.rsplit(" :: ", 1)[1] for c in meta.get_all("Classifier")
               if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert claimed == {"%d.%d" % sys.version_info[:2]}
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Changelog", "Issues"} <= set(urls)
    # no real address exists yet: placeholders must be plainly unresolvable
    assert all(re.match(r"https://[^/]+\.invalid/", u) for u in urls.values()), urls
    entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "froxlor-fleet = froxlor_fleet.cli:run" in entry_points


def test_installed_wheel_works_from_another_directory(installed: Path, tmp_path: Path) -> None:
    from froxlor_fleet import __version__

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run(installed / "froxlor-fleet", "--version", cwd=elsewhere)
    assert res.returncode == 0 and res.stdout.startswith(f"froxlor-fleet {__version__} "), res
    res = run(installed / "python", "-c", (
        "import froxlor_fleet, sys\n"
        "from froxlor_fleet.operations.ftpplan import render_fragment\n"
        "assert '/site-packages/' in froxlor_fleet.__file__, froxlor_fleet.__file__\n"
        "sys.stdout.write(render_fragment((50000, 50100)))\n"), cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert "PassivePorts 50000 50100" in res.stdout
    res = run(installed / "python", "-m", "froxlor_fleet", "--help", cwd=elsewhere)
    assert res.returncode == 0 and "Exit status:" in res.stdout
    res = run(installed / "froxlor-fleet", "audit", "nothere.py", "--json", cwd=elsewhere)
    assert res.returncode == 2
    assert json.loads(res.stdout)["findings"][0]["kind"] == "inventory_error"
    res = run(installed / "python", "-c", (
        "from importlib import resources\n"
        "import json\n"
        "json.loads(resources.files('froxlor_fleet.audit').joinpath('audit.schema.json')"
        ".read_text())\n"), cwd=elsewhere)
    assert res.returncode == 0, res.stderr


def test_installed_audit_gives_all_three_exit_codes(installed: Path, tmp_path: Path) -> None:
    # The installed command against hosts of the test-only "canned" connector
    # (tests/fakeconn on PYTHONPATH adds only the connector, not this checkout).
    import jsonschema

    from froxlor_fleet.audit.fact import LISTENING_SECTION
    from froxlor_fleet.operations.ftpplan import render_fragment
    from helpers import FIXTURES, build_fact

    schema = json.loads((ROOT / "froxlor_fleet" / "audit" / "audit.schema.json").read_text())
    ss = (FIXTURES / "ss-lab-web-host.txt").read_text().splitlines()
    from froxlor_fleet.facts import SECTION
    from test_audit import ftp_dump

    fragment = render_fragment((49152, 65534))
    spec = {"scenario": "converged-web-ftp", "fragment": fragment}
    # the ftp section: froxlor's ProFTPd tree with this fragment, so ProFTPd uses it
    ftp = [f"{SECTION}ftp", *ftp_dump(fragment)]
    ok = build_fact(spec) + ftp + [LISTENING_SECTION, *ss]
    drift = build_fact({**spec, "conf": {"LOGLEVEL": "full"}}) + ftp + [LISTENING_SECTION, *ss]
    (tmp_path / "inventory.py").write_text("web_servers = ['@canned/web1']\n")
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "web_servers.py").write_text('froxlor_roles = ["web", "ftp"]\n')
    for answer, code in (({"lines": ok}, 0), ({"lines": drift}, 1), ({"refuse": "no"}, 2)):
        (tmp_path / "fleet.json").write_text(json.dumps({"web1": answer}))
        res = run(installed / "froxlor-fleet", "audit", "inventory.py", "--json", cwd=tmp_path,
                  PYTHONPATH=str(ROOT / "tests" / "fakeconn"),
                  CANNED_FLEET=str(tmp_path / "fleet.json"), CANNED_FLEET_LOG=str(tmp_path / "log"))
        assert res.returncode == code, res.stdout + res.stderr
        doc = json.loads(res.stdout)
        jsonschema.validate(doc, schema)
        assert doc["exit"] == code


# --- the source distribution ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist built from a copy of this tree with the build backend pyproject.toml
    names, installed into a fresh virtualenv (as an isolated build does); unpacked."""
    tomllib = pytest.importorskip("tomllib")
    base = tmp_path_factory.mktemp("sdist")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE, symlinks=True)
    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    venv = base / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=base).returncode == 0
    res = run(venv / "bin" / "python", "-m", "pip", "install", "-q",
              "--disable-pip-version-check", *system["requires"], cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    backend = system["build-backend"]
    res = run(venv / "bin" / "python", "-c",
              f"import {backend} as b, sys; print(b.build_sdist(sys.argv[1]))", base / "dist",
              cwd=src)
    assert res.returncode == 0, res.stdout + res.stderr
    archive = base / "dist" / res.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        tar.extractall(base / "unpacked", filter="data")
    (top,) = (base / "unpacked").iterdir()
    return top


def _tracked(folder: str) -> set[str]:
    """Files under ``folder`` of this tree, as a clean clone has them."""
    return {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
            and not p.name.endswith(".pyc")}


def test_sdist_has_the_tests_their_support_files_and_the_examples(sdist: Path) -> None:
    names = {str(p.relative_to(sdist)) for p in sdist.rglob("*") if p.is_file()}
    for needed in ("tests/helpers.py", "tests/conftest.py", "tests/test_catalog.py",
                   "examples/inventory.py", "examples/deploy.py", "examples/group_data/all.py",
                   "README.md", "CHANGELOG.md", "LICENSE", "docs/audit.md",
                   "froxlor_fleet/audit/audit.schema.json", "froxlor_fleet/remote/state.sh"):
        assert needed in names, needed
    unit_tests = {n for n in _tracked("tests") if not n.startswith("tests/lab/")}
    for folder in ("tests/fixtures/", "tests/operations/", "tests/fakeconn/"):
        assert any(n.startswith(folder) for n in unit_tests), folder
    assert sorted(unit_tests - names) == []
    assert sorted(_tracked("examples") - names) == [] and sorted(_tracked("docs") - names) == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_sdist_unit_tests_run_from_the_unpacked_sdist(sdist: Path) -> None:
    # a few quick files that need the support files: helpers, fixtures, operation cases,
    # the README's table; this checkout is not on the path, the sdist's package is
    res = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
              "tests/test_catalog.py", "tests/test_operations.py", "tests/test_facts.py",
              "tests/test_first_hour.py::test_examples_folder_is_what_init_writes",
              cwd=sdist, PYTHONPATH=str(sdist))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert " passed" in res.stdout and "error" not in res.stdout.splitlines()[-1]

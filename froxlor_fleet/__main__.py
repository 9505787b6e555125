"""``python -m froxlor_fleet``: the ``froxlor-fleet`` command (see ``froxlor_fleet.cli``)."""

from .cli import run

if __name__ == "__main__":
    run()

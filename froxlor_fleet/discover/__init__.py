"""``froxlor-fleet discover``: proposed data for a fleet that already runs (issue 18).

``fact`` reads (the audit's one command, then froxlor's own settings from its
database, read-only: ``remote/froxlor_settings.sh``), ``propose`` decides (pure) with
``froxlor`` (what froxlor's settings say beside what runs: evidence, conflicts, the
sources it names), ``render`` writes the Python files, ``collect`` drives pyinfra,
``cli`` is the command. docs/discover.md says what is read, what is proposed and why.
"""

from .render import host_data

__all__ = ["host_data"]

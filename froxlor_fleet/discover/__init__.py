"""``froxlor-fleet discover``: proposed data for a fleet that already runs (issue 18).

``fact`` reads (the audit's one command), ``propose`` decides (pure), ``render`` writes
the Python files, ``collect`` drives pyinfra, ``cli`` is the command. docs/discover.md
says what is proposed and why; froxlor's own settings are not read yet (``fact.py``).
"""

from .render import host_data

__all__ = ["host_data"]

"""Programs that run ON THE MANAGED HOSTS (shell and stdlib Python), shipped as files
and sent over SSH by the operations; ``ufwmodel`` is also imported by the control side."""

from importlib import resources


def program(name: str) -> str:
    """The text of a host-side program shipped here (sent over SSH as ``sh -c TEXT``
    or ``python3 -c TEXT``)."""
    return resources.files(__package__).joinpath(name).read_text()

"""Programs that run ON THE MANAGED HOSTS (shell and stdlib Python), shipped as files
and sent over SSH by the operations; ``ufwmodel`` is also imported by the control side."""

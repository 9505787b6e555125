"""The FTP daemons' configuration as the state fact reads it, pure Python, no pyinfra.

- ``dump``: what the host's dump says (daemons installed and running, ProFTPd's
  configuration tree, pure-ftpd's passive-range files);
- ``replay``: ProFTPd's parser replayed over that tree (the effective passive range);
- ``judge``: would ProFTPd use this deploy's fragment (conflicts and notes);
- ``daemon``: which daemon the ftp role manages on a host.
"""

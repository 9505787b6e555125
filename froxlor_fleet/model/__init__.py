"""The model: fleet data in, each host's desired state out. Pure data and decisions; no
host is read or changed here.

- ``catalog``: the role catalog, every data default, the paths on a host;
- ``validation``: one host's data -> ``HostPlan`` or one-line errors;
- ``plan``: the desired state (``HostPlan``, ``RuleSpec``) and ufw's port notation;
- ``ufwrules``: the rule model (``remote/ufwmodel.py``, shared with the host program)
  applied to ``RuleSpec``s;
- ``loading``: an inventory loaded as pyinfra's CLI loads it, validated into plans.
"""

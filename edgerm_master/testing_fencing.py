"""`python -m edgerm_master.testing_fencing [--unfenced] [master flags]`: the master with its
own early detection of a lost lead switched off, for the fencing scenario of issue 12
(tests/master/test_ha_scenarios.py).

A deposed leader normally stops twice over: its election notices the lost lease or the foreign
election key and ends the process, and every commit is an etcd transaction conditioned on its
election key (`EtcdStore._commit`). This entry point keeps only the second (`RoleLoop(
act_on_loss=False)`), so that a test shows the conditioned writes alone keep a paused and
woken leader from writing and launching. `--unfenced` also drops the condition: the test must
then fail (the woken leader commits and launches), which shows it can fail.
"""

from __future__ import annotations

import sys

import edgerm_master.__main__ as master_main
from edgerm_master import etcd_store, roles


def main(argv: list[str]) -> int:
    unfenced = "--unfenced" in argv
    argv = [a for a in argv if a != "--unfenced"]
    roles_ctor = roles.RoleLoop

    def role_loop(*args: object, **kwargs: object) -> roles.RoleLoop:
        return roles_ctor(act_on_loss=False)

    master_main.RoleLoop = role_loop  # type: ignore[assignment, misc]
    if unfenced:
        # A compare that always holds (every create_revision is > -1): no fencing.
        fenced = etcd_store.cmp_create_revision

        def always(key: bytes, revision: int, result: str = "EQUAL") -> dict[str, object]:
            return fenced(key, -1, "GREATER")

        etcd_store.cmp_create_revision = always  # type: ignore[assignment]
    return master_main.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

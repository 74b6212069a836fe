"""End to end over TCP (DLMS wrapper): the bijli client against an emulated meter served by
`bijli meter serve`'s service. The checks are in tests/e2e_checks.py."""
import pytest

from tests import e2e_checks as E

rig = E.rig_fixture("tcp")


@pytest.mark.parametrize("check", E.CHECKS + [E.check_concurrent_clients_tcp], ids=E.check_id)
def test_e2e_tcp(rig, check):
    check(rig)

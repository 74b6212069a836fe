"""End to end over a pseudo-terminal (HDLC), as a USB serial adapter would be: the bijli
client against an emulated meter served by `bijli meter serve --pty`'s service. The checks
are in tests/e2e_checks.py."""
import pytest

from tests import e2e_checks as E


@pytest.fixture(scope="module")
def rig():
    r = E.Rig("pty")
    yield r
    r.close()


@pytest.mark.parametrize("check", E.CHECKS + [E.check_hdlc_push_on_the_line],
                         ids=lambda f: f.__name__[6:])
def test_e2e_pty(rig, check):
    check(rig)

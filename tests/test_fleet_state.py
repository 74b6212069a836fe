"""--state DIR (fleet/state.py): a fleet stored and restarted goes on exactly; a fleet killed
while it stores loses no acknowledged token."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from firmware import token_codec as tc
from fleet.core import Fleet
from fleet.state import StateError
from headend.vending import DEMO_VENDING_KEY

DAY = 86400


def vend(mid, rupees, tid):
    key = tc.derive_key(DEMO_VENDING_KEY, mid, 0)
    return tc.TokenCipher(key, mid).encrypt(tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT,
                                                                             rupees), tid, 0, 0)


def _run(fleet, mids, tid0):
    for k, mid in enumerate(mids):
        assert fleet.enter_token(mid, vend(mid, 100 + k, tid0)).accepted
    fleet.jump(DAY // 2)
    fleet.run_due()


def _figures(fleet, mids):
    out = []
    for mid in mids:
        fleet.open_session(mid).release()
        m = fleet.meter(mid).meter
        out.append((m.now(), m.account.balance, m.account.total_credits,
                    m.metrology.import_reg.total_mwh()))
    return out


def test_a_fleet_stored_and_restarted_goes_on_as_if_it_never_stopped(tmp_path):
    opts = dict(meters=300, seed=21, speed=0, max_live=3)
    mids = ["BJ%08d" % (10000001 + i) for i in (0, 7, 42, 299)]
    ref = Fleet(**opts)
    _run(ref, mids, 0)
    _run(ref, mids, 1)
    want = _figures(ref, mids)

    a = Fleet(state_dir=str(tmp_path), **opts)
    _run(a, mids, 0)
    a.close()
    assert len(os.listdir(tmp_path / "meters")) >= len(mids)
    b = Fleet(state_dir=str(tmp_path), **opts)
    assert b.now() == a.now()
    _run(b, mids, 1)
    assert _figures(b, mids) == want
    # a token already used stays used after the restart
    assert not b.enter_token(mids[0], vend(mids[0], 100, 0)).accepted
    b.close()


def test_state_of_another_population_is_refused(tmp_path):
    Fleet(50, seed=1, speed=0, state_dir=str(tmp_path)).close()
    with pytest.raises(StateError, match="seed"):
        Fleet(50, seed=2, speed=0, state_dir=str(tmp_path))


def test_a_damaged_meter_file_is_named_not_replaced(tmp_path):
    f = Fleet(50, seed=1, speed=0, state_dir=str(tmp_path))
    f.open_session("BJ10000001").release()
    f.close()
    path = tmp_path / "meters" / "0.bfm"
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="0.bfm"):
        Fleet(50, seed=1, speed=0, state_dir=str(tmp_path))


CHILD = textwrap.dedent("""
    import sys
    from fleet.core import Fleet
    from tests.test_fleet_state import vend
    f = Fleet(200, seed=8, speed=0, state_dir=sys.argv[1], max_live=2)
    start = int(sys.argv[2])
    for k in range(start, start + 400):
        mid = "BJ%08d" % (10000001 + k % 5)
        res = f.enter_token(mid, vend(mid, 100, k // 5))
        print("ACK", mid, k // 5, res.accepted, flush=True)
        if k % 7 == 0:
            f.jump(600)
            f.run_due()
            f.checkpoint()
""")


def test_a_kill_mid_save_loses_no_acknowledged_token(tmp_path):
    """kill -9 the fleet at several points while it enters tokens and stores meters; every
    token acknowledged before the kill is still credited (and refused as used) after it."""
    state = str(tmp_path / "state")
    acked = {}
    start = 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for kill_after in (3, 11, 29, 57):
        p = subprocess.Popen([sys.executable, "-c", CHILD, state, str(start)], cwd=root,
                             stdout=subprocess.PIPE, text=True)
        lines = 0
        for line in p.stdout:
            _, mid, tid, ok = line.split()
            assert ok == "True"
            acked.setdefault(mid, set()).add(int(tid))
            lines += 1
            if lines >= kill_after:
                os.kill(p.pid, signal.SIGKILL)
                break
        p.wait()
        p.stdout.close()
        start += lines
    f = Fleet(200, seed=8, speed=0, state_dir=state, max_live=2)
    for mid, tids in acked.items():
        m = f.meter(mid).meter
        assert m.account.total_credits >= len(tids) * 10000 + f.population.spec(
            f.index(mid)).opening_paise
        for tid in tids:  # every acknowledged token is used
            assert not f.enter_token(mid, vend(mid, 100, tid)).accepted
    f.close()

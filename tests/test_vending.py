"""Host vending: id allocation, persistence across restarts, epoch rollover, batches, errors."""
import threading

import pytest

from firmware import token_codec as tc
from firmware import token_gate as tg
from headend import vending
from headend.vending import VendingError, Vendor

T0 = 1790000000


def _gate(v, meter, revs=(0,)):
    return tg.TokenGate(meter.encode(), {r: v.meter_key(meter, r) for r in revs})


def test_ids_in_sequence_per_meter_and_survive_restart(tmp_path):
    path = tmp_path / "vend.sqlite3"
    with Vendor(path) as v:
        a = [v.vend_record("M-A", "credit", 100) for _ in range(3)]
        b = v.vend_record("M-B", "credit", 100)
    assert [r.token_id for r in a] == [0, 1, 2]
    assert b.token_id == 0
    with Vendor(path) as v:  # restart: the counters came back from the file
        assert v.meter_state("M-A") == vending.MeterState(0, 3, 0)
        assert v.vend_record("M-A", "credit", 100).token_id == 3
        assert len(v.history("M-A")) == 4
        assert v.history("M-A")[0]["token_id"] == 3


def test_vend_record_round_trip_through_gate(tmp_path):
    with Vendor(tmp_path / "v.db") as v:
        rec = v.vend_record("BJL42", tc.TYPE_CREDIT, 16384)
        assert rec.actual == 16390 and rec.quantity == 16384
        assert rec.digits.count(" ") == 4 and len(rec.digits) == 24
        g = _gate(v, "BJL42")
        res = g.check(rec.digits, T0)
        assert res.code == tg.ACCEPT and res.value == 16390 * 100 and res.token_id == rec.token_id
        assert v.vend("BJL42", "credit", 1) != rec.digits


def test_two_vendors_on_one_file_never_share_an_id(tmp_path):
    path = tmp_path / "shared.db"
    v1 = Vendor(path)
    v2 = Vendor(path)
    ids = []
    for _ in range(10):
        ids.append(v1.vend_record("M1", "credit", 5).token_id)
        ids.append(v2.vend_record("M1", "credit", 5).token_id)
    assert sorted(ids) == list(range(20))
    v1.close()
    v2.close()


def test_threads_never_share_an_id(tmp_path):
    v = Vendor(tmp_path / "t.db")
    ids = []
    lock = threading.Lock()

    def work():
        for _ in range(25):
            r = v.vend_record("M1", "credit", 5)
            with lock:
                ids.append(r.token_id)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(100))
    v.close()


def test_epoch_rollover_when_ids_run_out(tmp_path):
    path = tmp_path / "e.db"
    with Vendor(path) as v:
        v.register("M9", epoch=0, next_id=tc.ID_COUNT - 2)
        recs = [v.vend_record("M9", "credit", 10) for _ in range(3)]
    assert [(r.epoch, r.token_id) for r in recs] == [(0, tc.ID_COUNT - 2), (0, tc.ID_COUNT - 1), (1, 0)]
    with Vendor(path) as v:
        assert v.meter_state("M9") == vending.MeterState(1, 1, 0)
        g = _gate(v, "M9")
        g.epoch = 0
        for r in recs:
            res = g.check(r.digits, T0)
            assert res.code == tg.ACCEPT, res
            assert g.commit(res, T0)
        assert g.epoch == 1
        # an old-epoch token after the move can never validate again
        assert g.check(recs[0].digits, T0).code == tg.AUTH


def test_last_epoch_exhausted_is_refused(tmp_path):
    with Vendor(tmp_path / "x.db") as v:
        v.register("M1", epoch=tc.EPOCH_MAX, next_id=tc.ID_COUNT)
        with pytest.raises(VendingError, match="every id"):
            v.vend("M1", "credit", 10)
        assert v.meter_state("M1") == vending.MeterState(tc.EPOCH_MAX, tc.ID_COUNT, 0)
        assert v.history("M1") == []


def test_register_never_moves_counters_back(tmp_path):
    with Vendor(tmp_path / "r.db") as v:
        for _ in range(5):
            v.vend("M1", "credit", 1)
        with pytest.raises(VendingError, match="never reused"):
            v.register("M1", epoch=0, next_id=2)
        v.register("M1", epoch=1, next_id=0)
        assert v.vend_record("M1", "credit", 1).epoch == 1
        with pytest.raises(VendingError):
            v.register("M2", epoch=70000)
        with pytest.raises(VendingError, match="integers"):
            v.register("M2", epoch="1")


def test_register_keeps_the_key_revision_unless_given(tmp_path):
    # the meter only decrypts under its current key revision: a register() that silently put
    # vending back to revision 0 (the old default) made every later token fail with "auth"
    with Vendor(tmp_path / "kr.db") as v:
        kr = v.vend_record("M1", "key-revision")
        assert v.meter_state("M1").key_rev == 1
        v.register("M1", epoch=1, next_id=0)  # key_rev not given: kept
        assert v.meter_state("M1") == vending.MeterState(1, 0, 1)
        c = v.vend_record("M1", "credit", 10)
        g = _gate(v, "M1", revs=(0, 1))
        for r in (kr, c):
            res = g.check(r.digits, T0)
            assert res.code == tg.ACCEPT, res
            g.commit(res, T0)
        v.register("M9", key_rev=3)  # a new meter may start at any revision
        assert v.meter_state("M9") == vending.MeterState(0, 0, 3)
        # recovery: a key-revision token the meter never took; say what the meter holds
        v.vend_record("M9", "key-revision")
        v.register("M9", epoch=0, next_id=1, key_rev=3)
        assert v.vend_record("M9", "credit", 5).key_rev == 3

def test_key_revision_vend_moves_later_tokens_to_new_revision(tmp_path):
    with Vendor(tmp_path / "k.db") as v:
        c1 = v.vend_record("M1", "credit", 50)
        kr = v.vend_record("M1", "key-revision")
        c2 = v.vend_record("M1", "credit", 60)
        assert (c1.key_rev, kr.key_rev, kr.quantity, c2.key_rev) == (0, 0, 1, 1)
        with pytest.raises(VendingError, match="key revision"):
            v.vend("M1", "key-revision", 1)
        g = _gate(v, "M1", revs=(0, 1))
        for r in (c1, kr, c2):
            res = g.check(r.digits, T0)
            assert res.code == tg.ACCEPT, res
            g.commit(res, T0)
        assert g.key_rev == 1


def test_batch_is_all_or_nothing(tmp_path):
    with Vendor(tmp_path / "b.db") as v:
        recs = v.vend_many([("M1", "credit", 1), ("M2", "credit", 2), ("M1", "clear-tamper", None)])
        assert [(r.meter_id, r.token_id) for r in recs] == [("M1", 0), ("M2", 0), ("M1", 1)]
        with pytest.raises(VendingError):  # invalid request: nothing allocated
            v.vend_many([("M1", "credit", 1), ("M1", "credit", -5)])
        with pytest.raises(VendingError):  # fails while vending: rolled back
            v.vend_many([("M1", "credit", 1), ("M1", "key-revision", 0)])
        assert v.meter_state("M1").next_id == 2
        assert len(v.history("M1")) == 2


@pytest.mark.parametrize("meter, ttype, value, match", [
    ("M1", "bogus", 1, "unknown token type"),
    ("M1", 9, 1, "unknown token type"),
    ("M1", "credit", None, "need a value"),
    ("M1", "credit", 0, "at least 1 rupee"),
    ("M1", "credit", -1, "at least 1 rupee"),
    ("M1", "credit", 1.5, "whole number"),
    ("M1", "credit", tc.AMOUNT_MAX + 1, "maximum"),
    ("M1", "load-limit", 10 ** 7, "load limit"),
    ("M1", "clear-credit", 5, "carry no value"),
    ("bad id", "credit", 1, "bad meter id"),
    ("M1", "key-revision", "2", "whole number"),
    ("M1", "key-revision", 0, "key revision"),
    ("", "credit", 1, "bad meter id"),
])
def test_bad_requests_are_refused_and_lose_nothing(tmp_path, meter, ttype, value, match):
    with Vendor(tmp_path / "bad.db") as v:
        v.vend("M1", "credit", 1)
        with pytest.raises(VendingError, match=match):
            v.vend(meter, ttype, value)
        assert v.meter_state("M1").next_id == 1


def test_corrupt_state_file_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "corrupt.db"
    junk = b"this is not a database" * 100
    path.write_bytes(junk)
    with pytest.raises(VendingError, match="unusable"):
        Vendor(path)
    assert path.read_bytes() == junk


def test_key_file(tmp_path):
    good = tmp_path / "k.hex"
    good.write_text("00112233 44556677\n8899aabb:ccddeeff\n")
    assert vending.load_key_file(good) == bytes.fromhex("00112233445566778899aabbccddeeff")
    for text in ("zz" * 16, "00" * 15, "00" * 65):
        bad = tmp_path / "bad.hex"
        bad.write_text(text)
        with pytest.raises(VendingError):
            vending.load_key_file(bad)
    with pytest.raises(VendingError, match="cannot read"):
        vending.load_key_file(tmp_path / "missing.hex")


def test_real_key_differs_from_demo(tmp_path):
    key = bytes(range(32))
    with Vendor(tmp_path / "a.db", vending_key=key) as v, Vendor(tmp_path / "b.db") as demo:
        assert not v.insecure and demo.insecure
        t = v.vend("M1", "credit", 10)
        assert demo.inspect("M1", t)["ok"] is False
        assert v.inspect("M1", t)["ok"] is True


def test_inspect(tmp_path):
    with Vendor(tmp_path / "i.db") as v:
        rec = v.vend_record("M1", "load-limit", 2500)
        info = v.inspect("M1", rec.digits.replace(" ", "-"))
        assert info["ok"] and info["type_name"] == "load-limit" and info["quantity"] == 2500
        assert (info["token_id"], info["epoch"], info["key_rev"]) == (0, 0, 0)
        assert info["issued"]["quantity"] == 2500
        assert v.inspect("M2", rec.digits)["ok"] is False
        assert "format" in v.inspect("M1", "12345")["reason"]
        assert v.inspect("M1", tc.service_code(3))["service"] == 3
        assert v.inspect("bad id", rec.digits)["ok"] is False
        # a decodable token of a reserved type is reported, not accepted
        raw = v.cipher("M1", 0).encrypt(11, 0, 77, 0, 0)
        info = v.inspect("M1", raw)
        assert info["ok"] is False and info["type_name"] == "reserved-11" and info["issued"] is None


def test_unwritable_state_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VendingError, match="cannot create"):
        Vendor(blocker / "sub" / "v.db")


def test_vending_state_is_the_headend_schema(tmp_path):
    """One schema: a vending file is a head-end database at the latest migration, its counters
    in `vend_state` and its log in `vends` (was: a stand-alone copy of those tables)."""
    from headend import db as dbmod
    from headend import migrations

    path = tmp_path / "v.db"
    with Vendor(path, clock=lambda: T0) as v:
        v.vend("M1", "credit", 100)
    db = dbmod.connect(str(path))
    assert migrations.current_version(db) == migrations.LATEST
    assert db.one("SELECT epoch, next_id, key_rev FROM vend_state WHERE meter_id='M1'") == (0, 1, 0)
    assert db.scalar("SELECT count(*) FROM vends WHERE meter_id='M1'") == 1
    db.close()


# the stand-alone vending schema before the head-end's schema was the one definition
STANDALONE_SCHEMA = """
CREATE TABLE meters (meter_id TEXT PRIMARY KEY, epoch INTEGER NOT NULL,
    next_id INTEGER NOT NULL, key_rev INTEGER NOT NULL);
CREATE TABLE vends (meter_id TEXT NOT NULL, epoch INTEGER NOT NULL, token_id INTEGER NOT NULL,
    key_rev INTEGER NOT NULL, ttype INTEGER NOT NULL, value INTEGER NOT NULL,
    quantity INTEGER NOT NULL, vended_at INTEGER NOT NULL,
    PRIMARY KEY (meter_id, epoch, token_id));
"""


def test_a_standalone_vending_file_keeps_its_counters_and_log(tmp_path):
    """A vending file of the earlier stand-alone schema is converted on first open: ids go on
    where they stopped (never reused), the log and the key revision are kept."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(STANDALONE_SCHEMA)
    con.execute("INSERT INTO meters VALUES ('M1', 2, 41, 1)")
    con.execute("INSERT INTO vends VALUES ('M1', 2, 40, 1, 0, 100, 100, %d)" % T0)
    con.commit()
    con.close()
    with Vendor(path) as v:
        assert v.meter_state("M1") == vending.MeterState(2, 41, 1)
        assert v.lookup("M1", 2, 40) == {"key_rev": 1, "ttype": 0, "value": 100,
                                         "quantity": 100, "vended_at": T0}
        rec = v.vend_record("M1", "credit", 100)
        assert (rec.epoch, rec.token_id, rec.key_rev) == (2, 41, 1)
    with Vendor(path) as v:  # converted once: the next open reads the head-end schema
        assert v.meter_state("M1") == vending.MeterState(2, 42, 1)
        assert [h["token_id"] for h in v.history("M1")] == [41, 40]

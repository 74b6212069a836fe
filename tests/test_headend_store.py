"""Head-end storage on SQLite and PostgreSQL: migrations, registry import, keys kept out of the
database, payments recorded exactly once (also from concurrent processes), outbox leases."""
import json
import os
import subprocess
import sys

import pytest

from firmware import token_codec as tc
from headend import db as dbmod
from headend import keyring, migrations, outbox, payments, registry

VK = bytes(range(32))  # test keys, not the demo ones
MASTER = bytes(range(100, 132))
BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")


def ring():
    return keyring.Keyring({"default": keyring.KeySet(VK, MASTER)}, source="test keys")


def add_meters(db, *ids, address="127.0.0.1:1"):
    registry.upsert(db, [registry._row({"meter_id": m, "address": address}, "test") for m in ids])


def test_migrate_twice_is_a_no_op_and_newer_schema_is_refused(db):
    assert migrations.current_version(db) == migrations.LATEST
    assert migrations.migrate(db) == []
    with db.transaction():
        db.execute("INSERT INTO schema_migrations (version, description, applied_at) "
                   "VALUES (?, 'from the future', 0)", (migrations.LATEST + 1,))
    with pytest.raises(dbmod.DatabaseError, match="newer than this head-end"):
        migrations.migrate(db)


def test_import_csv_first_column_is_the_meter_id_extra_columns_ignored(db, tmp_path):
    p = tmp_path / "reg.csv"
    p.write_text("Serial No,tcp,client_sap,feeder,segment,region,tariff,phone,zone\n"
                 "BJ00000001,127.0.0.1:4059,0x30,F7,S1,north,domestic,+91 98,z1\n"
                 "BJ00000002,127.0.0.1:4060,,F7,S2,north,domestic,,z2\n")
    rows, ignored = registry.read_file(str(p))
    assert ignored == ["zone"]
    assert registry.upsert(db, rows) == (2, 0)
    m = registry.get(db, "BJ00000001")
    assert m == {"meter_id": "BJ00000001", "address": "127.0.0.1:4059", "client_sap": 48,
                 "key_ref": "default", "feeder": "F7", "segment": "S1", "region": "north",
                 "tariff": "domestic", "contact": "+91 98"}
    assert registry.get(db, "BJ00000002")["client_sap"] == 0x30
    # JSON, updating one meter
    j = tmp_path / "reg.json"
    j.write_text(json.dumps({"meters": [{"meter_id": "BJ00000002", "region": "south"}]}))
    assert registry.upsert(db, registry.read_file(str(j))[0]) == (0, 1)
    assert registry.get(db, "BJ00000002")["region"] == "south"


def test_import_bad_row_names_its_line_and_imports_nothing(db, tmp_path):
    p = tmp_path / "reg.csv"
    p.write_text("meter,address\nBJ00000001,127.0.0.1:4059\nBJ00000002,nowhere\n")
    with pytest.raises(registry.RegistryError, match="line 3: address must be HOST:PORT"):
        registry.upsert(db, registry.read_file(str(p))[0])
    assert db.scalar("SELECT count(*) FROM meters") == 0
    p.write_text("meter,address\nBJ00000001,127.0.0.1:4059\nBJ00000001,127.0.0.1:4060\n")
    with pytest.raises(registry.RegistryError, match="appears twice"):
        registry.upsert(db, registry.read_file(str(p))[0])
    assert db.scalar("SELECT count(*) FROM meters") == 0


def test_pay_is_idempotent_on_its_reference(db):
    add_meters(db, "BJ00000001", "BJ00000002")
    k = ring()
    first = payments.record_payment(db, k, "BJ00000001", 150, "UPI-1")
    again = payments.record_payment(db, k, "BJ00000001", 150, "UPI-1")
    assert first.new and not again.new
    assert again.digits == first.digits and again.token_id == first.token_id == 0
    second = payments.record_payment(db, k, "BJ00000001", 50, "UPI-2")
    assert second.token_id == 1 and second.digits != first.digits  # ids never reused
    with pytest.raises(payments.PaymentConflict, match="already recorded for meter BJ00000001, 150"):
        payments.record_payment(db, k, "BJ00000001", 151, "UPI-1")
    with pytest.raises(payments.PaymentConflict):
        payments.record_payment(db, k, "BJ00000002", 150, "UPI-1")
    with pytest.raises(payments.PaymentError, match="unknown meter BJ00000009"):
        payments.record_payment(db, k, "BJ00000009", 150, "UPI-3")
    with pytest.raises(payments.PaymentError, match="at least 1 rupee"):
        payments.record_payment(db, k, "BJ00000001", 0, "UPI-4")
    # one vend, one payment, one delivery job per reference; the token decrypts for the meter
    assert db.scalar("SELECT count(*) FROM vends") == 2
    assert db.scalar("SELECT count(*) FROM payments") == 2
    assert db.all("SELECT payment_ref, state FROM deliveries ORDER BY id") == [
        ("UPI-1", "pending"), ("UPI-2", "pending")]
    cipher = tc.TokenCipher(tc.derive_key(VK, "BJ00000001", 0), tc.meter_id_bytes("BJ00000001"))
    _kind, x = tc.parse_entry(first.digits)
    ttype, value, token_id = cipher.decrypt(x, 0, 0)
    assert (ttype, tc.decode_amount(value), token_id) == (tc.TYPE_CREDIT, 150, 0)


def test_a_failed_payment_leaves_nothing_behind(db):
    add_meters(db, "BJ00000001")
    bad = keyring.Keyring({"other": keyring.KeySet(VK, MASTER)}, source="test keys")
    with pytest.raises(keyring.KeyringError, match="no key set 'default'"):
        payments.record_payment(db, bad, "BJ00000001", 100, "R1")
    for table in ("payments", "vends", "deliveries"):
        assert db.scalar("SELECT count(*) FROM %s" % table) == 0
    assert db.scalar("SELECT next_id FROM vend_state") in (None, 0)


def test_concurrent_pay_of_one_reference_from_several_processes_gives_one_token(db, db_url):
    add_meters(db, "BJ00000001")
    env = dict(os.environ, BIJLI_HEADEND_DB=db_url, BIJLI_VENDING_KEY=VK.hex(),
               BIJLI_DLMS_MASTER=MASTER.hex())
    procs = [subprocess.Popen([BIJLI, "headend", "pay", "--meter", "BJ00000001", "--amount",
                               "300", "--ref", "BANK-77", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers.append(json.loads(out))
    assert len({a["digits"] for a in answers}) == 1
    assert sorted(a["new"] for a in answers) == [False] * 5 + [True]
    assert db.scalar("SELECT count(*) FROM vends") == 1
    assert db.scalar("SELECT count(*) FROM deliveries") == 1
    assert db.scalar("SELECT next_id FROM vend_state WHERE meter_id='BJ00000001'") == 1


def test_no_key_bytes_in_the_database(db, db_url, tmp_path):
    add_meters(db, "BJ00000001")
    k = ring()
    payments.record_payment(db, k, "BJ00000001", 100, "R1")
    secrets = [VK, MASTER, tc.derive_key(VK, "BJ00000001", 0)]
    secrets += list(keyring.derive_dlms_keys(MASTER, "BJ00000001"))
    tables = ["meters", "vend_state", "vends", "payments", "deliveries", "workers"]
    dump = repr([db.all("SELECT * FROM %s" % t) for t in tables])
    for s in secrets:
        assert s.hex() not in dump.lower() and s.hex().upper() not in dump and repr(s) not in dump
    if not db_url.startswith("postgresql"):
        raw = open(db_url, "rb").read() + open(db_url + "-wal", "rb").read()
        assert not any(s in raw for s in secrets)
    assert "keys given" in repr(k.sets["default"]) and VK.hex() not in repr(k)


def test_claims_lease_jobs_one_session_per_meter_and_reclaim_expired_leases(db):
    add_meters(db, "BJ00000001", "BJ00000002")
    k = ring()
    for i, m in enumerate(["BJ00000001", "BJ00000001", "BJ00000002"]):
        payments.record_payment(db, k, m, 10 + i, "R%d" % i)
    t0 = db.scalar("SELECT max(created_at) FROM deliveries") + 1
    a = outbox.claim(db, "A", 10, 30, t0)
    assert [(j.meter_id, j.payment_ref) for j in a] == [("BJ00000001", "R0"), ("BJ00000002", "R2")]
    assert outbox.claim(db, "B", 10, 30, t0 + 1) == []  # R1 waits: its meter is in a session
    assert outbox.finish(db, a[0], outbox.DELIVERED, t0 + 2, outbox.OUTCOME_ACCEPTED)
    b = outbox.claim(db, "B", 10, 30, t0 + 3)
    assert [j.payment_ref for j in b] == ["R1"]
    # A dies holding R2: after its lease expires B takes it over; A can no longer record
    assert outbox.claim(db, "B", 10, 30, t0 + 29) == []
    assert outbox.extend(db, "B", [b[0].lease_id], 30, t0 + 20) == 1
    taken = outbox.claim(db, "B", 10, 30, t0 + 31)
    assert [(j.payment_ref, j.attempts) for j in taken] == [("R2", 2)]
    assert not outbox.finish(db, a[1], outbox.DELIVERED, t0 + 32, outbox.OUTCOME_ACCEPTED)
    assert not outbox.retry(db, a[1], t0 + 40, "late")
    assert outbox.finish(db, b[0], outbox.DELIVERED, t0 + 33, outbox.OUTCOME_USED)
    assert outbox.retry(db, taken[0], t0 + 100, "unreachable")
    assert outbox.claim(db, "B", 10, 30, t0 + 99) == []
    assert [j.payment_ref for j in outbox.claim(db, "C", 10, 30, t0 + 100)] == ["R2"]


def test_backoff_doubles_up_to_its_cap_with_jitter():
    import random
    rng = random.Random(1)
    delays = [outbox.backoff(n, 1.0, 60.0, rng) for n in range(1, 12)]
    for n, d in enumerate(delays, 1):
        full = min(60.0, 2.0 ** (n - 1))
        assert full / 2 <= d <= full
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # jittered, not all the cap


def test_keyring_from_file_and_environment_never_shows_keys(tmp_path):
    p = tmp_path / "keys.json"
    p.write_text(json.dumps({"vending_key": VK.hex(), "dlms_master": MASTER.hex(),
                             "key_sets": {"zone-b": {"vending_key": MASTER.hex()}}}))
    k = keyring.load(str(p), environ={})
    assert not k.key_set("default").insecure and k.key_set("zone-b").insecure
    ek, ak = keyring.derive_dlms_keys(MASTER, "BJ00000001")
    keys = k.dlms_keys("BJ00000001", "default")
    assert (keys.block_cipher_key, keys.authentication_key) == (ek, ak) and ek != ak
    assert keyring.derive_dlms_keys(MASTER, "BJ00000002")[0] != ek
    assert VK.hex() not in repr(k) + repr(k.sets) + repr(keys)
    env = keyring.load(None, environ={"BIJLI_VENDING_KEY": VK.hex()})
    assert env.insecure  # no DLMS master: the demo DLMS keys
    assert keyring.load(None, environ={}).insecure
    p.write_text(json.dumps({"vending_key": "zz"}))
    with pytest.raises(keyring.KeyringError, match="vending_key is not hex"):
        keyring.load(str(p), environ={})


def test_stuck_recharges_requeued_by_meter_or_feeder_with_a_fresh_deadline(db, tmp_path):
    registry.upsert(db, [registry._row({"meter_id": m, "address": "127.0.0.1:1", "feeder": f},
                                       "t") for m, f in [("BJ00000001", "F1"),
                                                         ("BJ00000002", "F2")]])
    k = ring()
    payments.record_payment(db, k, "BJ00000001", 10, "A")
    payments.record_payment(db, k, "BJ00000002", 10, "B")
    t0 = db.scalar("SELECT max(created_at) FROM deliveries") + 1
    for job in outbox.claim(db, "W", 10, 30, t0):
        assert outbox.finish(db, job, outbox.STUCK, t0 + 1, None, None, "unreachable")
    assert outbox.requeue_stuck(db, t0 + 100, feeder="F9") == 0
    assert outbox.requeue_stuck(db, t0 + 100, feeder="F2") == 1
    assert db.all("SELECT payment_ref, state FROM deliveries ORDER BY id") == [
        ("A", "stuck"), ("B", "pending")]
    again = outbox.claim(db, "W", 10, 30, t0 + 100)
    assert [(j.payment_ref, j.attempts, j.created_at) for j in again] == [("B", 2, t0 + 100)]
    assert outbox.requeue_stuck(db, t0 + 200, ["BJ00000001"]) == 1
    env = dict(os.environ, BIJLI_HEADEND_DB=str(tmp_path / "x.sqlite"))
    r = subprocess.run([BIJLI, "headend", "requeue"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "--meter ID, --feeder NAME or --all" in r.stderr


def test_commands_on_a_missing_database_say_init_and_create_nothing(tmp_path):
    missing = tmp_path / "typo.sqlite"
    for args in (["status"], ["import", str(tmp_path / "reg.csv")],
                 ["pay", "--meter", "BJ00000001", "--amount", "5", "--ref", "X"]):
        r = subprocess.run([BIJLI, "headend"] + args + ["--db", str(missing)],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "run `bijli headend init`" in r.stderr, r.stderr
    assert not missing.exists()
    r = subprocess.run([BIJLI, "headend", "init", "--db", str(missing)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "schema at version %d" % migrations.LATEST in r.stdout
    assert missing.exists()

"""Associations (public 0x10, meter reader 0x20 with LLS, utility 0x30 with HLS-GMAC and
ciphering): what each may read and do, and every refusal — wrong password, wrong keys, a
replayed invocation counter, a SAP locked after failed attempts — after which the meter
keeps serving everybody."""
import pytest

from hil.conformance.helpers import past_lock
from protocol.errors import AssociationError, ServiceError


def test_public_reads_identity_clock_and_balance_only(public_meter, target):
    assert public_meter.serial_number() == target.meter_id
    assert public_meter.clock().tzinfo is not None
    assert isinstance(public_meter.balance(), int)
    with pytest.raises(ServiceError) as e:
        public_meter.energy()
    assert e.value.code in (3, 4)  # read-write-denied / object-undefined
    with pytest.raises(ServiceError):
        public_meter.enter_token("1234 5678 9012 3456 7890")


def test_reader_reads_registers_but_commands_nothing(reader_meter):
    assert reader_meter.energy() >= 0
    assert reader_meter.relay().control_mode is not None
    with pytest.raises(ServiceError):
        reader_meter.enter_token("1234 5678 9012 3456 7890")


def test_utility_reads_its_object_list(meter):
    objects = meter.read("0.0.40.0.0.255", 2)
    obis = {bytes(item[2]) for item in objects}
    for needed in ("0.0.1.0.0.255", "0.0.96.3.10.255", "0.0.19.40.0.255", "0.0.94.96.24.255"):
        assert bytes(int(x) for x in needed.split(".")) in obis, needed


def test_every_readable_attribute_of_the_object_list_reads(meter):
    """Every attribute the object list declares readable for this association decodes."""
    read = 0
    for item in meter.read("0.0.40.0.0.255", 2):
        class_id, obis = int(item[0]), bytes(item[2])
        for right in item[3][0]:
            attr, mode = int(right[0]), int(right[1])
            if mode & 1:
                meter.get(class_id, obis, attr)  # decodes, or raises
                read += 1
    assert read > 50


def test_public_is_refused_what_its_object_list_does_not_grant(public_meter, meter):
    """Objects of the utility list missing from the public one, and public attributes
    declared without read access, are refused to the public association."""
    def rights(objects):
        return {bytes(o[2]): (int(o[0]), {int(a[0]): int(a[1]) for a in o[3][0]})
                for o in objects}
    public = rights(public_meter.read("0.0.40.0.0.255", 2))
    utility = rights(meter.read("0.0.40.0.0.255", 2))
    assert set(public) < set(utility)
    refused = 0
    for obis, (class_id, attrs) in utility.items():
        granted = public.get(obis, (class_id, {}))[1]
        for attr in attrs:
            if not granted.get(attr, 0) & 1:
                with pytest.raises(ServiceError):
                    public_meter.get(class_id, obis, attr)
                refused += 1
    assert refused > 20


def test_a_wrong_password_is_refused(target):
    bad = _keys(target, password=b"00000000")
    with pytest.raises(AssociationError, match="authentication failure"):
        target.client("reader", keys=bad)
    target.client("reader").close()  # the right one works (and clears the failure count)


@pytest.mark.parametrize("which", ["authentication_key", "block_cipher_key"])
def test_wrong_utility_keys_are_refused(target, which):
    with pytest.raises(AssociationError, match="deciphering error"):
        target.client("utility", keys=_keys(target, **{which: bytes(16)}))
    target.client("public").close()  # and the meter keeps serving


def test_a_replayed_invocation_counter_is_refused(target, meter):
    meter.balance()  # the meter has seen this title's counters from 1 on
    with pytest.raises(AssociationError, match="deciphering error"):
        target.client("utility", invocation_counter=1)
    assert meter.balance() is not None


def test_three_wrong_passwords_lock_the_reader_sap_for_a_while(target, clock):
    bad = _keys(target, password=b"00000000")
    for _ in range(3):
        with pytest.raises(AssociationError, match="authentication failure"):
            target.client("reader", keys=bad)
    with pytest.raises(AssociationError, match="transient"):
        target.client("reader")  # locked: even the right password waits
    target.client("public").close()  # other SAPs are not locked
    past_lock(clock)
    target.client("reader").close()


def _keys(target, **changes):
    from protocol.keys import ClientKeys

    k = target.keys
    fields = {"block_cipher_key": k.block_cipher_key,
              "authentication_key": k.authentication_key, "password": k.password,
              "system_title": k.system_title}
    fields.update(changes)
    return ClientKeys(**fields)

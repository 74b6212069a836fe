"""DLMS/COSEM security suite 0: AES-GCM-128 with a 12-octet tag (Green Book 9.2.7).

- Security control octet (SC): bits 0-3 suite id (0), bit 4 authentication, bit 5
  encryption, bit 6 key set (0 unicast, 1 broadcast), bit 7 compression (unsupported).
  SC_AUTH_ENC = 0x30, SC_AUTH = 0x10, SC_ENC = 0x20.
- IV = system title (8 octets) ‖ invocation counter (4 octets, big-endian).
- Authenticated data: SC ‖ AK (auth+enc); SC ‖ AK ‖ plaintext (auth only).
- Envelopes (see `protocol.apdu.ciphered`): service-specific glo-/ded- tags (glo-get-request
  0xC8, ...) and general-glo-ciphering 0xDB (which carries the sender's system title).
- Invocation counters: `InvocationCounterTracker` rejects a replayed or decreasing counter
  (SecurityError) and only records a counter after the tag has verified (never for an
  encryption-only envelope, which has no tag).
- HLS-GMAC (authentication mechanism 5): f(challenge) = SC ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge),
  `hls_gmac` / `verify_hls_gmac`, and the pass-3/pass-4 helpers built on
  reply_to_HLS_authentication (IC 15 method 1).

Key material is never put into exception messages or reprs.
"""

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.apdu.ciphered import (
    DED_TAG_FOR,
    GENERAL_DED_CIPHERING,
    GENERAL_GLO_CIPHERING,
    GLO_TAG_FOR,
    CipheredApdu,
    GeneralCiphering,
)
from protocol.axdr import encode_length
from protocol.errors import DecodeError, EncodeError, SecurityError

SC_AUTH = 0x10
SC_ENC = 0x20
SC_AUTH_ENC = 0x30
SC_BROADCAST = 0x40
SC_COMPRESSION = 0x80
SUITE_MASK = 0x0F
TAG_LEN = 12
MAX_INVOCATION_COUNTER = 0xFFFFFFFF


ASSOCIATION_LN = "0.0.40.0.0.255"
REPLY_TO_HLS_AUTHENTICATION = 1  # IC 15 method 1


def _key(k, what):
    if not isinstance(k, (bytes, bytearray)) or len(k) != 16:
        raise SecurityError("%s must be 16 octets" % what)
    return bytes(k)


def _title(st):
    if not isinstance(st, (bytes, bytearray)) or len(st) != 8:
        raise SecurityError("system title must be 8 octets")
    return bytes(st)


def _check_sc(sc):
    if sc & SUITE_MASK:
        raise SecurityError("security suite %d not supported (suite 0 only)" % (sc & SUITE_MASK))
    if sc & SC_COMPRESSION:
        raise SecurityError("compressed APDUs are not supported")
    if not sc & (SC_AUTH | SC_ENC):
        raise SecurityError("security control 0x%02X gives no protection" % sc)


def _iv(system_title, invocation_counter):
    if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
        raise SecurityError("invocation counter out of range")
    return _title(system_title) + invocation_counter.to_bytes(4, "big")


# ---------------------------------------------------------------- AES-GCM core


class _Keys:
    """Cached AES objects for one block cipher key."""

    __slots__ = ("ek", "ak", "aead", "aad30")

    def __init__(self, block_cipher_key, authentication_key):
        self.ek = _key(block_cipher_key, "block cipher key")
        self.ak = _key(authentication_key, "authentication key")
        self.aead = AESGCM(self.ek)
        self.aad30 = bytes((SC_AUTH_ENC,)) + self.ak

    def __repr__(self):
        return "<suite-0 keys (hidden)>"


def _encrypt(keys, sc, iv, plaintext):
    if sc & SC_ENC and sc & SC_AUTH:
        return keys.aead.encrypt(iv, plaintext, bytes((sc,)) + keys.ak)[:-4]
    if sc & SC_AUTH:
        tag = keys.aead.encrypt(iv, b"", bytes((sc,)) + keys.ak + plaintext)
        return plaintext + tag[:TAG_LEN]
    # encryption only: GCM without tag = AES-CTR starting at counter block IV ‖ 00000002
    enc = Cipher(algorithms.AES(keys.ek), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    return enc.update(plaintext) + enc.finalize()


def _decrypt(keys, sc, iv, payload):
    if sc & SC_AUTH:
        if len(payload) < TAG_LEN:
            raise SecurityError("ciphered content shorter than the authentication tag")
        body, tag = payload[:-TAG_LEN], payload[-TAG_LEN:]
        if sc & SC_ENC:
            aad = bytes((sc,)) + keys.ak
            dec = Cipher(algorithms.AES(keys.ek), modes.GCM(iv, tag, min_tag_length=TAG_LEN)
                         ).decryptor()
            dec.authenticate_additional_data(aad)
            try:
                return dec.update(body) + dec.finalize()
            except InvalidTag:
                raise SecurityError("authentication tag mismatch (wrong key or altered APDU)"
                                    ) from None
        expect = keys.aead.encrypt(iv, b"", bytes((sc,)) + keys.ak + body)[:TAG_LEN]
        if not hmac.compare_digest(expect, tag):
            raise SecurityError("authentication tag mismatch (wrong key or altered APDU)")
        return body
    dec = Cipher(algorithms.AES(keys.ek), modes.CTR(iv + b"\x00\x00\x00\x02")).decryptor()
    return dec.update(payload) + dec.finalize()


def encrypt(block_cipher_key, authentication_key, system_title, invocation_counter,
            security_control, plaintext):
    """Protect `plaintext`; returns the ciphered information (after SC ‖ IC)."""
    _check_sc(security_control)
    keys = _Keys(block_cipher_key, authentication_key)
    return _encrypt(keys, security_control, _iv(system_title, invocation_counter),
                    bytes(plaintext))


def decrypt(block_cipher_key, authentication_key, system_title, invocation_counter,
            security_control, payload):
    """Verify/decrypt a ciphered information; SecurityError on a bad tag."""
    _check_sc(security_control)
    keys = _Keys(block_cipher_key, authentication_key)
    return _decrypt(keys, security_control, _iv(system_title, invocation_counter),
                    bytes(payload))


# ---------------------------------------------------------------- invocation counters


class InvocationCounterTracker:
    """Highest accepted invocation counter per peer system title.

    `check(st, counter)` raises SecurityError unless counter is above the last accepted one;
    `accept(st, counter)` records it (call only after the tag verified). `last(st)` gives the
    recorded value (None if none), `dump()/load()` persist the table."""

    def __init__(self, initial=None):
        self._last = dict(initial or {})

    def check(self, system_title, invocation_counter):
        last = self._last.get(bytes(system_title))
        if last is not None and invocation_counter <= last:
            raise SecurityError("invocation counter %d replayed or decreasing (last %d)"
                                % (invocation_counter, last))

    def accept(self, system_title, invocation_counter):
        self.check(system_title, invocation_counter)
        self._last[bytes(system_title)] = invocation_counter

    def last(self, system_title):
        return self._last.get(bytes(system_title))

    def dump(self):
        return dict(self._last)

    def load(self, table):
        self._last = dict(table)


class SecurityContext:
    """Suite-0 protection for one side of an association.

    own_system_title: ours (goes into our IVs and general-glo-ciphering);
    peer_system_title: the other side's (from the AARQ/AARE AP title), used for
    service-specific envelopes that do not carry it.
    `invocation_counter` is the next counter we will use; it only grows.
    """

    def __init__(self, block_cipher_key, authentication_key, own_system_title,
                 peer_system_title=None, security_control=SC_AUTH_ENC, invocation_counter=1,
                 dedicated_key=None, broadcast_key=None, tracker=None):
        _check_sc(security_control)
        self._keys = _Keys(block_cipher_key, authentication_key)
        self._ded = _Keys(dedicated_key, authentication_key) if dedicated_key else None
        self._bcast = _Keys(broadcast_key, authentication_key) if broadcast_key else None
        self.own_system_title = _title(own_system_title)
        self.peer_system_title = _title(peer_system_title) if peer_system_title else None
        self.security_control = security_control
        if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
            raise SecurityError("invocation counter out of range")
        self.invocation_counter = invocation_counter
        self.tracker = tracker if tracker is not None else InvocationCounterTracker()

    def __repr__(self):
        return "<SecurityContext st=%s sc=0x%02X counter=%d keys hidden>" % (
            self.own_system_title.hex(), self.security_control, self.invocation_counter)

    def set_dedicated_key(self, key):
        """Use `key` for ded- envelopes (from the InitiateRequest dedicated-key)."""
        self._ded = _Keys(key, self._keys.ak) if key else None

    def _next_counter(self):
        counter = self.invocation_counter
        if counter > MAX_INVOCATION_COUNTER:
            raise SecurityError("invocation counter exhausted: the keys must be changed")
        self.invocation_counter = counter + 1
        return counter

    # ------------------------------------------------------------ outgoing

    def protect(self, apdu, general=False, dedicated=False, invocation_counter=None):
        """Cipher the plaintext APDU octets; returns the envelope octets.

        Service-specific glo-/ded- tag by default, general-glo-ciphering when `general`."""
        if type(apdu) is not bytes:
            apdu = bytes(apdu)
        if not apdu:
            raise EncodeError("empty APDU")
        if general:
            tag = GENERAL_DED_CIPHERING if dedicated else GENERAL_GLO_CIPHERING
        else:
            tag = (DED_TAG_FOR if dedicated else GLO_TAG_FOR).get(apdu[0])
            if tag is None:
                raise EncodeError("APDU 0x%02X has no %s ciphered form"
                                  % (apdu[0], "ded-" if dedicated else "glo-"))
        keys = self._keys
        if dedicated:
            if self._ded is None:
                raise SecurityError("no dedicated key in this association")
            keys = self._ded
        counter = self._next_counter() if invocation_counter is None else invocation_counter
        if not 0 <= counter <= MAX_INVOCATION_COUNTER:
            raise SecurityError("invocation counter out of range")
        sc = self.security_control
        counter_octets = counter.to_bytes(4, "big")
        iv = self.own_system_title + counter_octets
        if sc == SC_AUTH_ENC:  # the common case, inlined
            payload = keys.aead.encrypt(iv, apdu, keys.aad30)[:-4]
        else:
            payload = _encrypt(keys, sc, iv, apdu)
        n = 5 + len(payload)
        length = bytes((n,)) if n < 0x80 else encode_length(n)
        if general:
            return (bytes((tag, 8)) + self.own_system_title + length + bytes((sc,))
                    + counter_octets + payload)
        return bytes((tag,)) + length + bytes((sc,)) + counter_octets + payload

    # ------------------------------------------------------------ incoming

    def unprotect(self, data, check_counter=True):
        """Verify and decipher an envelope; returns the plaintext APDU octets.

        Raises SecurityError on a bad tag, wrong key, replayed/decreasing counter or a
        security control weaker than ours; DecodeError if the envelope is malformed."""
        data = bytes(data)
        if not data:
            raise DecodeError("empty APDU")
        if data[0] in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
            env = GeneralCiphering.decode(data)
            st = env.system_title
            if len(st) != 8:
                raise SecurityError("general-ciphering system title must be 8 octets")
            if self.peer_system_title is not None and st != self.peer_system_title:
                raise SecurityError("general-ciphering from system title %s, expected %s"
                                    % (st.hex(), self.peer_system_title.hex()))
            dedicated = env.tag == GENERAL_DED_CIPHERING
        else:
            env = CipheredApdu.decode(data)
            if self.peer_system_title is None:
                raise SecurityError("peer system title unknown: cannot build the IV")
            st = self.peer_system_title
            dedicated = env.tag in DED_TAG_FOR.values()
        sc = env.security_control
        _check_sc(sc & ~SC_BROADCAST)
        if (sc & SC_AUTH_ENC) != (self.security_control & SC_AUTH_ENC):
            raise SecurityError("security control 0x%02X does not match the policy 0x%02X"
                                % (sc, self.security_control))
        keys = self._keys
        if dedicated:
            if self._ded is None:
                raise SecurityError("dedicated-key APDU but no dedicated key")
            keys = self._ded
        elif sc & SC_BROADCAST:
            if self._bcast is None:
                raise SecurityError("broadcast-key APDU but no broadcast key")
            keys = self._bcast
        if check_counter:
            self.tracker.check(st, env.invocation_counter)
        plain = _decrypt(keys, sc, _iv(st, env.invocation_counter), env.payload)
        if isinstance(env, CipheredApdu):
            # the envelope tag is not authenticated: it must name the service inside
            table = DED_TAG_FOR if dedicated else GLO_TAG_FOR
            if not plain or table.get(plain[0]) != env.tag:
                raise SecurityError("envelope 0x%02X does not match the ciphered APDU %s"
                                    % (env.tag, "0x%02X" % plain[0] if plain else "(empty)"))
        if check_counter and sc & SC_AUTH:
            # only a verified tag makes the counter the peer's: an encryption-only (0x20)
            # envelope is checked against the window but never moves it
            self.tracker.accept(st, env.invocation_counter)
        return plain

    # ------------------------------------------------------------ HLS-GMAC

    def hls_response(self, challenge, invocation_counter=None):
        """f(challenge) for the peer's challenge, with our system title (pass 3 or 4)."""
        counter = self._next_counter() if invocation_counter is None else invocation_counter
        return _hls_gmac(self._keys, self.own_system_title, counter, challenge)

    def verify_hls_response(self, reply, our_challenge, peer_system_title=None):
        """Check the peer's f(our challenge); returns its invocation counter."""
        st = peer_system_title or self.peer_system_title
        if st is None:
            raise SecurityError("peer system title unknown")
        return _verify_hls(self._keys, st, our_challenge, reply)


def _hls_gmac(keys, system_title, invocation_counter, challenge, sc=SC_AUTH):
    iv = _iv(system_title, invocation_counter)
    tag = keys.aead.encrypt(iv, b"", bytes((sc,)) + keys.ak + bytes(challenge))[:TAG_LEN]
    return bytes((sc,)) + invocation_counter.to_bytes(4, "big") + tag


def _verify_hls(keys, system_title, challenge, reply):
    reply = bytes(reply)
    if len(reply) != 1 + 4 + TAG_LEN:
        raise SecurityError("HLS-GMAC reply must be %d octets, got %d" % (17, len(reply)))
    sc = reply[0]
    if sc != SC_AUTH:
        raise SecurityError("HLS-GMAC reply security control must be 0x10, got 0x%02X" % sc)
    counter = int.from_bytes(reply[1:5], "big")
    expect = _hls_gmac(keys, system_title, counter, challenge, sc)
    if not hmac.compare_digest(expect, reply):
        raise SecurityError("HLS-GMAC authentication failed (wrong key or challenge)")
    return counter


def hls_gmac(block_cipher_key, authentication_key, system_title, invocation_counter,
             challenge):
    """f(challenge) = SC(0x10) ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge) with IV = system_title ‖ IC."""
    return _hls_gmac(_Keys(block_cipher_key, authentication_key), system_title,
                     invocation_counter, challenge)


def verify_hls_gmac(block_cipher_key, authentication_key, system_title, challenge, reply):
    """Verify f(challenge) computed by the owner of `system_title`; returns its IC."""
    return _verify_hls(_Keys(block_cipher_key, authentication_key), system_title, challenge,
                       reply)


# ---------------------------------------------------------------- HLS passes 3/4 as APDUs


def hls_pass3_request(f_stoc, invoke_id_and_priority=0xC1):
    """The ACTION request for pass 3: reply_to_HLS_authentication(f(StoC)) on the current
    association (IC 15, 0.0.40.0.0.255, method 1), parameter an octet-string."""
    from protocol.apdu import ActionRequestNormal, MethodDescriptor

    return ActionRequestNormal(MethodDescriptor(15, ASSOCIATION_LN, REPLY_TO_HLS_AUTHENTICATION),
                               bytes(f_stoc), invoke_id_and_priority)


def hls_pass4_check(response, context, ctos):
    """Check the pass-4 ACTION response: success and f(CtoS) from the server verifies.

    `response` is a decoded ActionResponseNormal; returns the server's invocation counter.
    Raises SecurityError on failure (a refused result included)."""
    from protocol.apdu import ActionResponseNormal, DataAccessResult

    if not isinstance(response, ActionResponseNormal):
        raise SecurityError("pass 4 expects an action-response-normal, got %s"
                            % type(response).__name__)
    if response.result != 0:
        raise SecurityError("server refused reply_to_HLS_authentication (result %d)"
                            % response.result)
    rp = response.return_parameters
    if not isinstance(rp, bytes) or isinstance(rp, DataAccessResult):
        raise SecurityError("pass 4 response carries no f(CtoS) octet-string")
    return context.verify_hls_response(rp, ctos)

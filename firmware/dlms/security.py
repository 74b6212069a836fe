"""DLMS security suite 0 (AES-GCM-128) for the server: ciphered APDUs, counters, HLS-GMAC.

Security control byte: 0x10 authentication, 0x20 encryption, 0x30 both; low nibble = suite
(0); compression (0x80) and broadcast key (0x40) are not supported. IV = system title (8) ||
invocation counter (4, big-endian). With authentication the AAD starts with SC || AK.

    s0 = Suite0(ek, ak)
    apdu = s0.wrap(0x30, title, ic, plain)            # service-specific glo (C4 -> CC, ...)
    apdu = s0.wrap_general(0x30, title, ic, plain)    # general-glo-ciphering (DB)
    kind, title, sc, ic, plain = s0.unwrap(apdu, peer_title, SC_AUTH_ENC)  # Security/DecodeError
    tag = s0.hls_response(title, ic, challenge)       # f(challenge) = SC || IC || GMAC (17 bytes)
    ic = s0.hls_verify(title, f, challenge)           # SecurityError if it does not verify

`CounterGuard` keeps the last accepted invocation counter per peer system title: a counter
is accepted only if it is greater (replayed or decreasing counters are rejected), and only
after the APDU authenticated, so garbage cannot push the window forward. `unwrap` with a
required security control refuses any other one before deciphering: a counter is never judged,
let alone accepted, for an APDU the association's policy would refuse (e.g. 0x20, no tag).
"""
from firmware.dlms import DecodeError, SecurityError
from firmware.dlms.apdu import GENERAL_GLO_CIPHERING
from firmware.dlms.axdr import EncodeError, decode_length
from firmware.dlms.gcm import Gcm, equal

SC_AUTH = 0x10
SC_ENC = 0x20
SC_AUTH_ENC = 0x30
TAG_LEN = 12

KIND_GLO = 1
KIND_GENERAL = 2

# plain APDU tag -> service-specific global-ciphering tag (apdu.py's X -> GLO_X; written as
# numbers: attribute look-ups would make this table's bytecode several times larger)
GLO_TAGS = {
    0x01: 0x21, 0x08: 0x28, 0x0E: 0x2E, 0xC0: 0xC8, 0xC1: 0xC9, 0xC2: 0xCA, 0xC3: 0xCB,
    0xC4: 0xCC, 0xC5: 0xCD, 0xC7: 0xCF,
}  # exception-response and data-notification have no glo form: general-glo-ciphering
PLAIN_TAGS = {}
for _k in GLO_TAGS:
    PLAIN_TAGS[GLO_TAGS[_k]] = _k


class Suite0:
    """Suite-0 ciphering with one block cipher key (EK) and authentication key (AK).

    With the policy's security control (0x30, authenticated and encrypted) a request is
    deciphered and its reply ciphered through scratch buffers kept here (the IV and SC || AK),
    the reply written straight into the APDU it is sent in: one suite serves one meter, one
    call at a time."""

    def __init__(self, ek, ak, aes=None):
        if len(ek) != 16 or len(ak) != 16:
            raise ValueError("suite 0 keys are 16 bytes")
        self.gcm = Gcm(bytes(ek), aes)
        self.ak = bytes(ak)
        self._iv = bytearray(12)  # system title || invocation counter
        self._aad = bytearray(17)  # SC || AK
        self._aad[1:] = self.ak

    def _set_iv(self, title, ic):
        iv = self._iv
        for i in range(8):
            iv[i] = title[i]
        iv[8] = (ic >> 24) & 0xFF
        iv[9] = (ic >> 16) & 0xFF
        iv[10] = (ic >> 8) & 0xFF
        iv[11] = ic & 0xFF
        return iv

    def _protect_into(self, sc, title, ic, plain, out, at):
        """SC || IC || ciphered text [|| tag] into out[at:] (sized by _content_len)."""
        _check_sc(sc)
        if len(title) != 8:
            raise ValueError("system title must be 8 bytes")
        out[at] = sc
        if not 0 <= ic <= 0xFFFFFFFF:  # (a compare allocates nothing; `&` a big int would)
            ic &= 0xFFFFFFFF
        iv = self._set_iv(title, ic)
        for i in range(4):
            out[at + 1 + i] = iv[8 + i]
        at += 5
        mode = sc & 0x30
        n = len(plain)
        if mode == SC_AUTH_ENC:
            aad = self._aad
            aad[0] = sc
            self.gcm.seal_into(iv, plain, aad, out, at, TAG_LEN)
        elif mode == SC_AUTH:
            out[at:at + n] = plain
            out[at + n:at + n + TAG_LEN] = self.gcm.gmac(iv, bytes((sc,)) + self.ak + bytes(plain))
        elif mode == SC_ENC:
            out[at:at + n] = self.gcm.encrypt(iv, plain, b"", TAG_LEN)[:n]
        else:
            raise SecurityError("security control 0x%02x protects nothing" % sc)

    def protect(self, sc, title, ic, plain):
        """SC || IC || ciphered text [|| tag] for security control `sc`."""
        out = bytearray(_content_len(sc, plain))
        self._protect_into(sc, title, ic, plain, out, 0)
        return bytes(out)

    def _open(self, title, buf, at):
        """(sc, ic, plaintext) of SC || IC || ciphered text [|| tag] in buf[at:]."""
        if len(buf) - at < 5:
            raise SecurityError("ciphered content truncated")
        sc = buf[at]
        _check_sc(sc)
        ic = (buf[at + 1] << 24) | (buf[at + 2] << 16) | (buf[at + 3] << 8) | buf[at + 4]
        iv = self._set_iv(title, ic)
        body = memoryview(buf)[at + 5:]
        mode = sc & 0x30
        if mode == SC_AUTH_ENC:
            aad = self._aad
            aad[0] = sc
            return sc, ic, bytes(self.gcm.open(iv, body, aad, TAG_LEN))
        body = bytes(body)
        if mode == SC_AUTH:
            if len(body) < TAG_LEN:
                raise SecurityError("authenticated content shorter than its tag")
            plain = body[:len(body) - TAG_LEN]
            tag = self.gcm.gmac(iv, bytes((sc,)) + self.ak + plain)
            if not equal(tag, body[len(body) - TAG_LEN:]):
                raise SecurityError("authentication tag mismatch")
            return sc, ic, plain
        if mode == SC_ENC:
            # CTR is its own inverse: encrypting with a throw-away tag gives the plaintext
            return sc, ic, self.gcm.encrypt(iv, body, b"", TAG_LEN)[:len(body)]
        raise SecurityError("security control 0x%02x protects nothing" % sc)

    def unprotect(self, title, content):
        """(sc, ic, plaintext) of SC || IC || ciphered text [|| tag]; SecurityError if bad."""
        return self._open(title, content, 0)

    def _wrap(self, head, with_title, sc, title, ic, plain):
        """head || [title length || title] || length || content, built in one buffer."""
        n = _content_len(sc, plain)
        at = 2 + len(title) if with_title else 1
        out = bytearray(at + _length_size(n) + n)
        out[0] = head
        if with_title:
            out[1] = len(title)
            out[2:at] = title
        self._protect_into(sc, title, ic, plain, out, _put_length(out, at, n))
        return bytes(out)

    def wrap(self, sc, title, ic, plain):
        """Service-specific glo APDU (e.g. GET.response C4 -> glo-get-response CC)."""
        if not plain or plain[0] not in GLO_TAGS:
            raise ValueError("no glo form for this APDU")
        return self._wrap(GLO_TAGS[plain[0]], False, sc, title, ic, plain)

    def wrap_general(self, sc, title, ic, plain):
        """general-glo-ciphering APDU carrying our system title."""
        return self._wrap(GENERAL_GLO_CIPHERING, True, sc, title, ic, plain)

    def unwrap(self, apdu, peer_title, required_sc=None):
        """(kind, title, sc, ic, plain APDU) of a glo or general-glo APDU.

        DecodeError if the framing is bad, SecurityError if it does not decipher/authenticate
        or its security control is not `required_sc` (when given; checked before anything else
        is done with the content). For service-specific glo the title is `peer_title` (from
        the AARQ).
        """
        if not apdu:
            raise DecodeError("empty APDU")
        tag = apdu[0]
        if tag == GENERAL_GLO_CIPHERING:
            tlen, pos = decode_length(apdu, 1)
            if pos + tlen > len(apdu):
                raise DecodeError("system title truncated")
            if peer_title is not None and _same(apdu, pos, tlen, peer_title):
                title = peer_title  # the same bytes: no copy
            else:
                title = bytes(apdu[pos:pos + tlen])
            pos += tlen
            kind = KIND_GENERAL
            if not title and peer_title is not None:
                title = peer_title  # some clients omit it on a point-to-point link
            if len(title) != 8:
                raise SecurityError("system title must be 8 bytes")
        elif tag in PLAIN_TAGS:
            title = peer_title
            pos = 1
            kind = KIND_GLO
            if title is None:
                raise SecurityError("no peer system title for a glo APDU")
        else:
            raise DecodeError("not a ciphered APDU")
        n, pos = decode_length(apdu, pos)
        if pos + n != len(apdu):
            raise DecodeError("ciphered APDU length mismatch")
        if required_sc is not None and (n < 1 or apdu[pos] != required_sc):
            raise SecurityError("security control does not match the association's policy")
        sc, ic, plain = self._open(title, apdu, pos)
        if kind == KIND_GLO and (not plain or GLO_TAGS.get(plain[0]) != tag):
            raise SecurityError("ciphered APDU does not match its glo tag")
        return kind, title, sc, ic, plain

    def hls_response(self, title, ic, challenge):
        """f(challenge) for HLS-GMAC: 0x10 || IC || GMAC(SC || AK || challenge), 17 bytes."""
        head = bytes((SC_AUTH,)) + (ic & 0xFFFFFFFF).to_bytes(4, "big")
        return head + self.gcm.gmac(bytes(title) + head[1:], head[:1] + self.ak + bytes(challenge))

    def hls_verify(self, title, f, challenge):
        """The peer's invocation counter if `f` is its valid f(challenge); else SecurityError."""
        if len(f) != 5 + TAG_LEN or f[0] != SC_AUTH:
            raise SecurityError("HLS-GMAC response malformed")
        ic = int.from_bytes(f[1:5], "big")
        if not equal(self.hls_response(title, ic, challenge), f):
            raise SecurityError("HLS-GMAC response does not verify")
        return ic


def _content_len(sc, plain):
    """Length of SC || IC || ciphered text [|| tag]."""
    return 5 + len(plain) + (TAG_LEN if sc & SC_AUTH else 0)


def _length_size(n):
    """Bytes of the A-XDR/BER length of n (as axdr.encode_length writes it)."""
    if n < 0x80:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x1000000:
        return 4
    if n < 0x100000000:
        return 5
    raise EncodeError("length too large")


def _put_length(out, at, n):
    """Write axdr.encode_length's bytes of n at out[at:]; returns the position after them."""
    k = _length_size(n) - 1
    if k:
        out[at] = 0x80 | k
        at += 1
    for i in range(k - 1 if k else 0, -1, -1):
        out[at] = (n >> (8 * i)) & 0xFF
        at += 1
    return at


def _same(buf, pos, n, value):
    """buf[pos:pos + n] == value, without slicing."""
    if n != len(value):
        return False
    for i in range(n):
        if buf[pos + i] != value[i]:
            return False
    return True


def _check_sc(sc):
    if sc & 0x0F:
        raise SecurityError("security suite %d not supported" % (sc & 0x0F))
    if sc & 0xC0:
        raise SecurityError("compression/broadcast key not supported")


class CounterGuard:
    """Last accepted invocation counter per peer system title (replays rejected)."""

    def __init__(self, state=None):
        self.last = dict(state) if state else {}

    def check(self, title, ic):
        """SecurityError unless `ic` is above the last counter accepted from `title`."""
        last = self.last.get(bytes(title))
        if last is not None and ic <= last:
            raise SecurityError("invocation counter %d not above %d" % (ic, last))

    def accept(self, title, ic):
        """Record `ic` as accepted from `title` (after check and authentication)."""
        self.last[bytes(title)] = ic

    def expected(self, title):
        """The lowest counter that would be accepted next from `title`."""
        last = self.last.get(bytes(title))
        return 0 if last is None else last + 1

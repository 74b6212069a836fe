"""Service-specific block transfer (GET with datablocks, SET with datablocks), sans-io.

A long GET result is the A-XDR encoding of the Data split into numbered blocks (from 1);
the client asks for each next block with get-request-next(last received block number).
A long SET value is sent the same way with set-request-with-first-datablock and
set-request-with-datablock, each acknowledged by set-response-datablock.
"""

from protocol.apdu.common import DATA_BLOCK_NUMBER_INVALID, DataAccessResult
from protocol.apdu.get import GetRequestNext, GetResponseWithDatablock
from protocol.apdu.set import (
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetResponseDatablock,
)
from protocol.axdr import decode as decode_data
from protocol.errors import DecodeError, EncodeError, ServiceError

DEFAULT_MAX_TOTAL = 1 << 20  # refuse to buffer more than 1 MiB of blocks


def _chunks(raw, max_block):
    if max_block < 1:
        raise EncodeError("block size must be positive")
    raw = bytes(raw)
    return [raw[i:i + max_block] for i in range(0, len(raw), max_block)] or [b""]


def get_response_blocks(encoded_data, max_block, invoke_id_and_priority=0xC1):
    """Split an encoded Data value into get-response-with-datablock APDUs (blocks 1..n)."""
    parts = _chunks(encoded_data, max_block)
    return [GetResponseWithDatablock(i == len(parts), i, part, invoke_id_and_priority)
            for i, part in enumerate(parts, 1)]


def set_request_blocks(attribute, encoded_data, max_block, access_selection=None,
                       invoke_id_and_priority=0xC1):
    """Split an encoded Data value into set-request-with-first-datablock + -with-datablock."""
    parts = _chunks(encoded_data, max_block)
    out = [SetRequestWithFirstDatablock(attribute, len(parts) == 1, 1, parts[0],
                                        access_selection, invoke_id_and_priority)]
    for i, part in enumerate(parts[1:], 2):
        out.append(SetRequestWithDatablock(i == len(parts), i, part, invoke_id_and_priority))
    return out


class _Assembler:
    def __init__(self, max_total=DEFAULT_MAX_TOTAL):
        self.max_total = max_total
        self.expected = 1
        self.buffer = bytearray()
        self.done = False

    def _add(self, last, number, raw):
        if self.done:
            raise DecodeError("block received after the last block")
        if number != self.expected:
            raise ServiceError("block %d received, %d expected" % (number, self.expected),
                               DATA_BLOCK_NUMBER_INVALID)
        if len(self.buffer) + len(raw) > self.max_total:
            raise DecodeError("block transfer exceeds %d octets" % self.max_total)
        self.buffer += raw
        self.expected += 1
        if last:
            self.done = True
            return decode_data(bytes(self.buffer))
        return None


class GetBlockAssembler(_Assembler):
    """Client side of a GET with datablocks.

    `add(response)` takes each GetResponseWithDatablock in turn; it returns None while
    blocks are missing (send `next_request()`), and the decoded Data after the last block.
    A block carrying a Data-Access-Result raises ServiceError with that code."""

    def add(self, response):
        if not isinstance(response, GetResponseWithDatablock):
            raise DecodeError("expected get-response-with-datablock, got %s"
                              % type(response).__name__)
        if isinstance(response.raw_data, DataAccessResult):
            raise ServiceError("GET block %d refused: %s" % (response.block_number,
                                                             response.raw_data.name),
                               int(response.raw_data))
        self.iip = response.invoke_id_and_priority
        return self._add(response.last_block, response.block_number, response.raw_data)

    def next_request(self):
        """get-request-next acknowledging the last block received."""
        return GetRequestNext(self.expected - 1, getattr(self, "iip", 0xC1))


class SetBlockAssembler(_Assembler):
    """Server side of a SET with datablocks.

    `add(request)` returns None for a non-final block (answer `ack()`), else the decoded
    value (then apply it and answer set-response-last-datablock)."""

    def add(self, request):
        if self.expected == 1:
            if not isinstance(request, SetRequestWithFirstDatablock):
                raise DecodeError("expected set-request-with-first-datablock")
            self.attribute = request.attribute
            self.access_selection = request.access_selection
        elif not isinstance(request, SetRequestWithDatablock):
            raise DecodeError("expected set-request-with-datablock")
        self.iip = request.invoke_id_and_priority
        return self._add(request.last_block, request.block_number, request.raw_data)

    def ack(self):
        """set-response-datablock for the last block received."""
        return SetResponseDatablock(self.expected - 1, self.iip)

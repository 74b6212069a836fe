"""How long the fuzzer waits for an answer, derived from the target instead of fixed.

A slow target (the MicroPython board loop answers once per 200 ms pass, an emulated Cortex-M3
takes seconds over an HLS association, a board at 9,600 baud needs about a second to send a
full frame) must not be fuzzed with the timeouts of an in-process emulator. `FuzzSession`
measures one liveness probe (a public association and three GETs) on the target before the
first case and derives from it:

- `answer_timeout(probe_s, baudrate)`: the seconds one request may take: never less than
  `MIN_TIMEOUT_S`, else `PROBE_FACTOR` probes (a probe is several exchanges; one request is
  one, but an HLS association or a token entry that writes NVM takes longer), plus the time
  a maximal PDU takes both ways on a serial line of `baudrate` (8N1: 10 bits an octet);
- `silence_seconds(probe_s)`: how long to listen for an answer that may rightly not come.

(`--duration` holds because a case sends no step once the time is up, and such an empty case
is neither counted nor probed: hypothesis runs keep their fixed size, so a seed draws the same
cases however fast the target is.)
"""
MIN_TIMEOUT_S = 3.0  # the old fixed timeout: fast targets keep it (a loaded CI machine)
PROBE_FACTOR = 5
LINK_OCTETS = 2 * (1024 + 32)  # a 1,024-octet PDU each way, with HDLC framing
PROBE_EXCHANGES = 6  # a probe: link + association, three GETs, release
MIN_SILENCE_S = 0.3


def link_seconds(octets, baudrate):
    """Seconds `octets` take on a serial line at `baudrate` (8N1); 0 without a baud rate."""
    return octets * 10.0 / baudrate if baudrate else 0.0


def answer_timeout(probe_s, baudrate=None):
    """The seconds to wait for one answer, from one probe's duration and the line's speed."""
    return round(max(MIN_TIMEOUT_S, PROBE_FACTOR * probe_s)
                 + link_seconds(LINK_OCTETS, baudrate), 3)


def silence_seconds(probe_s):
    """How long to listen for an answer the meter may rightly not send (a frame out of
    sequence): three exchanges of the probe, at least MIN_SILENCE_S."""
    return round(max(MIN_SILENCE_S, 3 * probe_s / PROBE_EXCHANGES), 3)

"""How long the fuzzer waits for an answer, and how many cases fit in the time left, both
derived from the target instead of fixed.

A slow target (the MicroPython board loop answers once per 200 ms pass, an emulated Cortex-M3
takes seconds over an HLS association, a board at 9,600 baud needs about a second to send a
full frame) must not be fuzzed with the timeouts of an in-process emulator, nor with chunks
of cases sized for it. `FuzzSession` measures one liveness probe (a public association and
three GETs) on the target before the first case and derives from it:

- `answer_timeout(probe_s, baudrate)`: the seconds one request may take: never less than
  `MIN_TIMEOUT_S`, else `PROBE_FACTOR` probes (a probe is several exchanges; one request is
  one, but an HLS association or a token entry that writes NVM takes longer), plus the time
  a maximal PDU takes both ways on a serial line of `baudrate` (8N1: 10 bits an octet);
- `cases_that_fit(seconds_left, seconds_per_case)`: how many cases the next hypothesis run
  may have so that `--duration` holds (the estimate comes from the probe until cases ran).
"""
import math

MIN_TIMEOUT_S = 3.0  # the old fixed timeout: fast targets keep it (a loaded CI machine)
PROBE_FACTOR = 5
LINK_OCTETS = 2 * (1024 + 32)  # a 1,024-octet PDU each way, with HDLC framing
PROBE_EXCHANGES = 6  # a probe: link + association, three GETs, release
STEP_EXCHANGES = 2
MIN_SILENCE_S = 0.3  # a step: one to three exchanges (an association, a block transfer)


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


def case_estimate(probe_s, steps_per_case):
    """Seconds one case should take, from the probe (before any case ran)."""
    return probe_s / PROBE_EXCHANGES * STEP_EXCHANGES * steps_per_case + probe_s


def cases_that_fit(seconds_left, seconds_per_case, most):
    """Cases of `seconds_per_case` that fit in `seconds_left`, at least 1 and at most `most`."""
    if seconds_per_case <= 0:
        return most
    return max(1, min(most, int(math.ceil(seconds_left / seconds_per_case))))

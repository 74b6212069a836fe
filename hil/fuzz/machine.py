"""The stateful fuzzer: a hypothesis RuleBasedStateMachine whose rules are DLMS steps (see
hil/fuzz/case.py) and whose teardown runs the after-case oracles (liveness, invariants).

`machine_for(session)` makes the machine class of one fuzz session (the target, the roles it
may use, the seed corpus, what was found already); hypothesis makes one instance per case.
"""
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from hil.fuzz import strategies as S
from hil.fuzz.case import Finding, check_invariants, snapshot
from hil.targets.base import HARD_RESET, POWER_CYCLE

MAX_POWER_STEPS = 1  # per case: a power cycle takes seconds on a process or a board
POWER_ODDS = 32  # and only one power rule drawn in POWER_ODDS acts (the others are no steps)


def machine_for(session):
    """The RuleBasedStateMachine class that fuzzes `session` (a hil.fuzz.runner.FuzzSession)."""
    roles = st.sampled_from(session.roles)
    malformed_steps = S.malformed_steps(session.corpus)
    hdlc = session.target.framing == "hdlc"
    power_kinds = [k for k, cap in (("cycle", POWER_CYCLE), ("reset", HARD_RESET))
                   if cap in session.target.capabilities and session.power_steps]

    class DlmsMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.case = session.new_case()
            self.steps = session.begin_case(self.case)
            # preconditions depend on what hypothesis drew, never on what ran (a step skipped
            # when the time is up must not change which rules the next draw may pick)
            self.power_draws = 0

        def _do(self, step):
            if session.skip_steps():
                return  # the time is up: the case ends without sending more
            self.steps.append(step)
            session.count_step()
            try:
                self.case.run(step)
            except Finding as f:
                if session.is_known(f):
                    self.case.close()  # a known defect: count it and go on
                    return
                session.detected()
                self.case.failed = True
                raise

        @initialize(role=roles, max_pdu=st.sampled_from([0xFFFF, 0xFFFF, 1024, 512, 256]))
        def associate_first(self, role, max_pdu):
            self._do({"op": "associate", "role": role, "max_pdu": max_pdu})

        @rule(role=roles, max_pdu=st.sampled_from([0xFFFF, 512, 256]))
        def associate(self, role, max_pdu):
            self._do({"op": "associate", "role": role, "max_pdu": max_pdu})

        @rule()
        def release(self):
            self._do({"op": "release"})

        @rule(read=S.attribute_reads())
        def get(self, read):
            (class_id, obis, attr), blocks = read
            self._do({"op": "get", "class": class_id, "obis": obis, "attr": attr,
                      "access": None, "blocks": blocks})

        @rule(read=S.selective_reads())
        def select(self, read):
            class_id, obis, attr, has_selective, selector, spec = read
            self._do({"op": "select", "class": class_id, "obis": obis, "attr": attr,
                      "selective": has_selective, "selector": selector, "spec": dict(spec)})

        @rule(write=S.writes())
        def set(self, write):
            class_id, obis, attr, data = write
            self._do({"op": "set", "class": class_id, "obis": obis, "attr": attr,
                      "data": data.hex()})

        @rule(call=S.actions())
        def action(self, call):
            class_id, obis, method, data = call
            self._do({"op": "action", "class": class_id, "obis": obis, "method": method,
                      "data": None if data is None else data.hex()})

        @rule(kind=st.sampled_from(["fresh", "replay", "garbage"]), rupees=st.integers(1, 50))
        def token(self, kind, rupees):
            self._do({"op": "token", "kind": kind, "rupees": rupees})

        @rule(delta_s=st.sampled_from([-86400, -3600, -1, 1, 3600, 86400, 40 * 86400]))
        def clock(self, delta_s):
            self._do({"op": "clock", "delta_s": delta_s})

        @rule(step=malformed_steps)
        def malformed(self, step):
            self._do(dict(step))

        def teardown(self):
            self.case.close()
            session.finish_case(self.case, check_invariants, snapshot)

    machine = DlmsMachine
    if hdlc:  # serial targets only: the rules exist only where they can act

        class HdlcSteps(machine):
            @rule(max_info=st.sampled_from([32, 48, 64, 128]), window=st.integers(1, 7))
            def link(self, max_info, window):
                self._do({"op": "link", "max_info": max_info, "window": window})

            @rule(kind=st.sampled_from(["ns-ahead", "ns-back", "ns-far"]))
            def sequence(self, kind):
                self._do({"op": "sequence", "kind": kind})
        machine = HdlcSteps
    if power_kinds:  # targets with a power cycle or a hard reset

        class PowerSteps(machine):
            @precondition(lambda self: self.power_draws < MAX_POWER_STEPS)
            @rule(kind=st.sampled_from(power_kinds), chance=st.integers(0, POWER_ODDS - 1))
            def power(self, kind, chance):
                if chance == 0:  # hypothesis shrinks towards 0: a shrunk case keeps it
                    self.power_draws += 1
                    self._do({"op": "power", "kind": kind})
        machine = PowerSteps
    machine.__name__ = "DlmsMachine"
    return machine

"""bijli's conformance suite: the behaviour every meter target must show, written once against
the HIL fixtures of hil/pytest_plugin.py and run on any target:

    pytest --pyargs hil.conformance --bijli-target=emulator --bijli-target=pty

Tests that need a capability the target lacks (power cycle, fast clock, ...) are skipped
with the reason. The tests share one meter per target and leave it usable for the next
(tokens accepted, lockouts cleared, relay connected, control mode 6).
"""

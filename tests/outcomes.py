"""Which outcome each example of a property (fuzz) test reached.

A fuzz test that checks replies only when there is one passes vacuously once the system stops
answering (or the test stops waiting long enough). So each example names the outcome it
reached (`hit`, also a hypothesis `event` for `--hypothesis-show-statistics`), and the test
ends with `check`: every outcome it expects was reached often enough, or the test fails.

    def test_x():
        seen = Outcomes("answered", "closed")
        _x(seen)                 # the @given function, with `seen` as its first argument
        seen.check()
"""
from collections import Counter

from hypothesis import event


class Outcomes:
    """Counts of named outcomes, one `hit` per example."""

    def __init__(self, *names, optional=()):
        self.names = names  # each must be reached
        self.optional = tuple(optional)  # allowed, not required
        self.counts = Counter()

    def hit(self, name):
        """Record that this example reached outcome `name`."""
        if name not in self.names + self.optional:
            raise AssertionError("unknown outcome %r (expected one of %s)"
                                 % (name, self.names + self.optional))
        self.counts[name] += 1
        event(name)

    def check(self, share=0.01, **shares):
        """Fail unless every outcome was reached by at least its share of the examples (the
        default `share`, or `name=share`) and at least once."""
        total = sum(self.counts.values())
        rare = {name: self.counts[name] for name in self.names
                if self.counts[name] < max(1, shares.get(name, share) * total)}
        assert total and not rare, "outcomes too rare in %d examples: %s (all: %s)" % (
            total, rare, dict(self.counts))

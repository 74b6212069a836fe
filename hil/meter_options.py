"""Options shared by `bijli meter run` and `bijli meter serve` (one name, one meaning each).

    --speed N       simulated seconds per real second: finite, 0 .. MAX_SPEED
    --balance RS    opening balance of a new meter, whole rupees (`--credit`: hidden old name)
"""
import click

from firmware.config import Config
from protocol.cli_types import FiniteFloatRange

# Above this a real-time run skips more than a day between two polls of the clock; the meter's
# monotonic ticks wrap after 12.4 days, so faster would read as clock jumps. `--speed 0` runs
# as fast as the CPU allows instead.
MAX_SPEED = 100000
DEFAULT_OPENING_RUPEES = 100
MAX_OPENING_RUPEES = Config().max_balance // 100  # a new meter holds at most its max_balance



def speed_option(default, zero_means):
    """--speed: simulated seconds per real second (a finite number in 0..MAX_SPEED)."""
    return click.option(
        "--speed", default=default, type=FiniteFloatRange(min=0, max=MAX_SPEED),
        show_default=True,
        help="Simulated seconds per real second, at most %d (0: %s)." % (MAX_SPEED, zero_means))


def balance_option(fn):
    """--balance RUPEES for a new meter, and the hidden deprecated `--credit` (its old name in
    `meter serve`). The command receives `balance` (None: not given)."""
    fn = click.option("--credit", "credit_alias", default=None,
                      type=click.IntRange(0, MAX_OPENING_RUPEES),
                      hidden=True, help="Deprecated name of --balance.")(fn)
    return click.option(
        "--balance", default=None, type=click.IntRange(0, MAX_OPENING_RUPEES),
        help="Opening balance in rupees for a new meter (default %d); ignored, with a note, "
             "for an existing one." % DEFAULT_OPENING_RUPEES)(fn)


def merge_balance(balance, credit_alias):
    """The --balance value, taking the deprecated --credit (with a note on stderr)."""
    if credit_alias is None:
        return balance
    if balance is not None:
        raise click.UsageError("--credit is the old name of --balance: give one of them")
    click.echo("note: --credit is deprecated; use --balance", err=True)
    return credit_alias


def opening_paise(balance):
    """Paise a new meter opens with for a --balance value (None: the default)."""
    return (DEFAULT_OPENING_RUPEES if balance is None else balance) * 100

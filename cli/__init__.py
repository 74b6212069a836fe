"""The `bijli` command: one click group, one module of this package per command group.

`cli/` only parses options, calls the library (firmware, protocol, hil, headend) and renders;
no click import lives outside it.

Subcommands are imported lazily so `bijli --help` stays fast and a broken optional
part cannot stop the others from working.
"""
import importlib

import click

# name -> (module, attribute, one-line help)
SUBCOMMANDS = {
    "demo": ("cli.demo", "demo", "Emulated meter + head-end session, end to end (no setup)."),
    "meter": ("cli.meter", "meter", "Run or serve an emulated meter."),
    "headend": ("cli.headend", "headend",
                "Head-end: registry, payments -> recharges, delivery workers."),
    "token": ("cli.token", "token", "Vend and inspect 20-digit recharge tokens."),
    "client": ("cli.client", "client", "Talk DLMS/COSEM to a meter over TCP or serial."),
    "decode": ("cli.decode", "decode_cmd",
               "Decode DLMS frames or an APDU given in hex, or a capture file."),
    "capture": ("cli.capture", "capture",
                "Record head-end <-> meter DLMS traffic (a transparent TCP proxy)."),
    "fuzz": ("cli.fuzz", "fuzz", "Fuzz a meter target (stateful + mutation, with oracles)."),
    "board": ("cli.board", "board", "Stage and flash the firmware on a MicroPython board."),
    "hil": ("cli.hil", "hil", "Hardware-in-loop: the conformance suite on meter targets."),
    "fleet": ("cli.fleet", "fleet",
              "An emulated fleet at utility scale: own addresses or a data concentrator."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        entry = SUBCOMMANDS.get(name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        return getattr(module, entry[1])

    def format_commands(self, ctx, formatter):
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="bijli")
def main():
    """bijli: an open smart prepaid electricity meter and its host tools."""


"""`bijli demo`: the demo story of headend/demo.py, narrated and summed up on the terminal."""
import click

from headend.demo import run_demo, summary_rows


@click.command("demo")
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False),
              help="Keep the demo meter's NVM image here (default: in memory).")
def demo(state_dir):
    """Emulated meter + head-end session, end to end (no setup)."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.rule("[bold]bijli demo[/bold]: a prepaid meter that keeps its own balance")
    styles = {"step": "bold cyan", "read": "", "event": "yellow"}

    def say(kind, text):
        prefix = "==> " if kind == "step" else "    "
        con.print(prefix + text, style=styles.get(kind, ""), highlight=False)

    try:
        s = run_demo(say, state_dir)
    except Exception as e:  # noqa: BLE001 - tell the user what broke, not a traceback
        raise click.ClickException("demo failed: %s" % e) from None
    tab = Table(title="Summary", show_header=False)
    tab.add_column("fact", style="bold")
    tab.add_column("value")
    for fact, value in summary_rows(s):
        tab.add_row(fact, value)
    con.print(tab)
    con.print("Keys and the vending key used here are the INSECURE public demo keys.", style="dim")

"""`python -m cli`: the `bijli` command without its console script."""
from cli import main

main()

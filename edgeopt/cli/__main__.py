"""``python -m edgeopt.cli``: the same command as the ``edgeopt`` script (what torchrun launches)."""

from edgeopt.cli import main

main(prog_name="edgeopt")

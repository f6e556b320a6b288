"""Commands of the contract that are not built yet: they say so and exit 2."""

from __future__ import annotations

import click


def make(name: str, short: str) -> click.Command:
    @click.command(name=name, help=f"{short}\n\nNot built yet in this edgeopt version.",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def planned():
        from edgeopt.cli import abort

        abort(f"`edgeopt {name}` is not built yet in edgeopt; see DESIGN.md for what it will do", 2)

    return planned

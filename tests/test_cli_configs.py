"""A flag, a keyword and a recipe key cannot disagree: for every command a recipe step runs, each
typed config field (made from the API's signature) is a CLI flag of the same name and default, and
each CLI flag is an API keyword (or one of the CLI's own: output format, verbosity)."""

import dataclasses
import importlib
import inspect

import click
import pytest

from edgeopt.cli import COMMANDS
from edgeopt.recipe.configs import STEPS, config_class

CLI_ONLY = {"as_json", "verbose", "json_out", "html_dir", "pb_out", "nproc_per_node"}  # how to print, how many processes


def _empty(v) -> bool:
    return v is None or v is False or v == () or v == [] or v is inspect.Parameter.empty or str(v) == "Sentinel.UNSET"


def _same_default(cli, api) -> bool:
    if _empty(cli) and _empty(api):
        return True
    if isinstance(cli, str) and isinstance(api, (tuple, list)):  # "1,4" on the command line is (1, 4) in Python
        return cli.split(",") == [str(x) for x in api]
    return cli == api


@pytest.mark.parametrize("step", list(STEPS))
def test_each_config_key_is_a_flag_with_the_same_default(step):
    command: click.Command = importlib.import_module(COMMANDS[step][0]).command
    flags = {p.name: p for p in command.params}
    api = inspect.signature(STEPS[step].load()).parameters
    fields = [f.name for f in dataclasses.fields(config_class(step))]
    assert not [f for f in fields if f not in flags], f"{step}: recipe keys with no CLI flag"
    assert not [n for n in flags if n not in api and n not in CLI_ONLY], f"{step}: CLI flags the API does not take"
    differ = {n: (flags[n].default, api[n].default) for n in fields if not _same_default(flags[n].default, api[n].default)}
    assert not differ, f"{step}: CLI default vs API (and recipe) default: {differ}"

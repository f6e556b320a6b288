"""The public Python API: one function per command, ``edgeopt.export(...)``, ``edgeopt.bench(...)``
(and later distill, prune, package, update), each keyword-only past its main arguments, returning
a result object, importing nothing heavy until called.

A command's function shares its name with a subpackage (``edgeopt.export`` holds the exporters),
and Python binds an imported subpackage over a same-named attribute of its parent. So the
subpackage itself is made callable: ``edgeopt.export`` is the package and calls the function,
whichever of the two an import reached first."""

from __future__ import annotations

import importlib
import sys
import types

# command -> (package, module holding the function); edgeopt.__getattr__ resolves these lazily
COMMANDS = {"export": ("edgeopt.export", "edgeopt.export.api"), "bench": ("edgeopt.bench", "edgeopt.bench.api"),
            "distill": ("edgeopt.distill", "edgeopt.distill.run"), "update": ("edgeopt.update", "edgeopt.update.run"),
            "prune": ("edgeopt.prune", "edgeopt.prune.run"),
            "federate": ("edgeopt.federate", "edgeopt.federate.run")}


class _CallablePackage(types.ModuleType):
    _command_module: str
    _command_name: str

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module(self._command_module), self._command_name)(*args, **kwargs)

    def __getattr__(self, name: str):
        """``from edgeopt.prune import prune, PruneResult``: names of the command's module, imported
        on first use (a submodule that is not imported yet is still found by the import system)."""
        module = self.__dict__.get("_command_module")
        if module is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(importlib.import_module(module), name)
        except AttributeError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


def callable_package(package: str, module: str, name: str) -> None:
    """Make ``package`` (already in sys.modules) call ``module.name``; its docstring and signature
    are found on that function (``help(edgeopt.export.api.export)``)."""
    pkg = sys.modules[package]
    pkg.__class__ = _CallablePackage
    pkg._command_module, pkg._command_name = module, name


# command -> (module, function), for commands that share no name with a subpackage
FUNCTIONS = {name: ("edgeopt.bundle", name) for name in ("keygen", "package", "verify", "install", "rollback",
                                                            "predict")}
FUNCTIONS["run"] = ("edgeopt.recipe.api", "run")


def command(name: str):
    """The callable for ``edgeopt.<name>``."""
    if name in FUNCTIONS:
        module, attr = FUNCTIONS[name]
        return getattr(importlib.import_module(module), attr)
    package, _ = COMMANDS[name]
    return importlib.import_module(package)

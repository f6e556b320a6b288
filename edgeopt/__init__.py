"""edgeopt: take trained PyTorch models to edge devices fast and without losing quality.

The Python API is one function per command: ``edgeopt.export(model, out, int8=True, ...)``,
``edgeopt.bench(artifact, ...)``, ``edgeopt.package(out=..., bundle=...)`` and the other bundle
commands; each returns a result object (edgeopt.commands).

Importing this package is cheap: heavy libraries (torch, onnxruntime, openvino, tensorrt)
are imported only inside the functions that use them.
"""

__version__ = "0.1.0"

__all__ = ["bench", "distill", "export", "federate", "install", "keygen", "package", "predict", "prune", "rollback",
           "run", "update", "verify", "__version__"]


def __getattr__(name: str):
    from edgeopt.commands import COMMANDS, FUNCTIONS, command

    if name in COMMANDS or name in FUNCTIONS:
        return command(name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")

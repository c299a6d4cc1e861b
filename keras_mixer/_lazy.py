"""Package attributes imported on first use (PEP 562), so that importing a
package, or running `keras-mixer --help`, does not start Keras and its backend."""

import importlib


def exports(package, table):
    """(__getattr__, __dir__) for `package`, whose public names live in the
    submodules `table` maps them to: {name: ".submodule"}."""

    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(table[name], package), name)

    def __dir__():
        return sorted(table)

    return __getattr__, __dir__

"""Package attributes imported on first use (PEP 562), so that importing a
package, or running `keras-mixer --help`, does not start Keras and its backend;
and a module imported as soon as another one is (`register_after`)."""

import importlib
import importlib.abc
import importlib.util
import sys


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


def register_after(trigger, module):
    """Imports `module` once `trigger` is imported: now if it already is, else
    right after the first `import trigger` completes (a one-shot import hook)."""
    if trigger in sys.modules:
        importlib.import_module(module)
    elif not any(isinstance(f, _After) and f.trigger == trigger for f in sys.meta_path):
        sys.meta_path.insert(0, _After(trigger, module))


class _After(importlib.abc.MetaPathFinder):
    def __init__(self, trigger, module):
        self.trigger, self.module = trigger, module

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.trigger:
            return None
        sys.meta_path.remove(self)  # one shot; and find the real spec without us
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ThenImport(spec.loader, self.module)
        return spec


class _ThenImport(importlib.abc.Loader):
    """The trigger's own loader, then `module` once the trigger is complete."""

    def __init__(self, loader, module):
        self.loader, self.module = loader, module

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        importlib.import_module(self.module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self.loader, name)

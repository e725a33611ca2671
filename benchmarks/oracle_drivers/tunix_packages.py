"""Import tunix's modules without running its packages' ``__init__.py`` (they import the
trainers' dependencies: metrax, qwix, grain, ...), for the oracle drivers."""

import os
import sys
import types


def skip_package_inits(root: str) -> None:
    """Register every package under ``root/tunix`` as an empty module with its path."""
    for directory, _, files in os.walk(os.path.join(root, "tunix")):
        if "__init__.py" in files:
            name = os.path.relpath(directory, root).replace(os.sep, ".")
            package = types.ModuleType(name)
            package.__path__ = [directory]
            sys.modules[name] = package

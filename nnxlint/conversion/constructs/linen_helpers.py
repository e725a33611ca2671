"""Functions that build a Linen layer each time they run, called by a class being converted::

    def batch_norm(x, train):           # the file's own, or ``ops.batch_norm`` of another file
        return nn.BatchNorm(use_running_average=not train)(x)

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            return batch_norm(nn.Dense(8)(x), train)

Inside Linen's ``__call__`` the layer binds to the calling module.  The NNX class would
call the function as it is, and Linen raises ``CallCompactUnboundModuleError`` (a Linen
module called outside ``init``/``apply``), so the class gets no fix and the reason names
the function.  A function counts when its own body calls a Linen layer class
(``nn.BatchNorm``) or a Linen class of the project.
"""

from __future__ import annotations

import ast
import functools
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint import names
from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, line_of
from nnxlint.flax_api import FLAX_LINEN, canonical_name
from nnxlint.project import LINEN, dotted_name
from nnxlint.textio import SourceError, read_source

if TYPE_CHECKING:
    from nnxlint.conversion.base import FileEnv
    from nnxlint.conversion.classes import ClassConverter


def check_helper_calls(converter: ClassConverter, methods: dict[str, cst.FunctionDef]) -> None:
    """Refuse the class when one of its methods calls a function that builds a Linen layer."""
    env = converter.env
    for method in methods.values():
        for node in walk(method):
            if isinstance(node, cst.Call) and isinstance(node.func, (cst.Name, cst.Attribute)):
                where = _linen_builder(env, node.func)
                if where is not None:
                    raise Unconvertible(
                        f"`{env.code(node.func)}` (line {line_of(env.module, node)}), {where}, builds a Linen layer "
                        "each time it runs: called from NNX code it raises CallCompactUnboundModuleError; "
                        "convert it to a module first")


def _linen_builder(env: FileEnv, func: cst.BaseExpression) -> Optional[str]:
    """Where the called function is defined, when it builds a Linen layer; else None."""
    if isinstance(func, cst.Name):
        own = next((statement for statement in env.module.body
                    if isinstance(statement, cst.FunctionDef) and statement.name.value == func.value), None)
        if own is not None:
            return "a function of this file" if _builds_here(env, own) else None
    if env.project is None:
        return None
    own_facts = env.project.index.by_path.get(env.project.path)  # its names, relative imports made absolute
    dotted = names.dotted_name(func)
    head, _, rest = (dotted or "").partition(".")
    if own_facts is None or head not in own_facts["names"]:
        return None
    imported = own_facts["names"][head]
    found = env.project.lookup(f"{imported}.{rest}" if rest else imported)
    if found is None or found[0] != "function":
        return None
    path, facts, name = found[1]
    if path not in env.project.index.run_paths:
        return None
    return f"a function of {path}" if _builds_there(env.project, path, facts, name) else None


def _builds_here(env: FileEnv, function: cst.FunctionDef) -> bool:
    for node in walk(function):
        if isinstance(node, cst.Call):
            member = env.linen_member(node.func)
            if (member and member.split(".")[-1][:1].isupper()) or \
                    (isinstance(node.func, cst.Name) and node.func.value in env.linen_classes):
                return True
    return False


def _builds_there(project, path: str, facts: dict, name: str) -> bool:
    module_names = facts["names"]
    function = _function_of(path, facts["digest"], name)
    if function is None:
        return False
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        dotted = dotted_name(node.func)
        head, _, rest = (dotted or "").partition(".")
        if head not in module_names:
            continue
        qualified = canonical_name(f"{module_names[head]}.{rest}" if rest else module_names[head])
        if qualified.startswith(FLAX_LINEN + ".") and qualified.rsplit(".", 1)[-1][:1].isupper():
            return True
        info = project.class_info(qualified)
        if info is not None and info.kind == LINEN:
            return True
    return False


@functools.lru_cache(maxsize=64)  # per file version (``digest``): each call site asks again
def _function_of(path: str, digest: str, name: str) -> Optional[ast.FunctionDef]:
    try:
        tree = ast.parse(read_source(path).text)
    except (SourceError, SyntaxError, ValueError):
        return None
    return next((statement for statement in tree.body
                 if isinstance(statement, ast.FunctionDef) and statement.name == name), None)


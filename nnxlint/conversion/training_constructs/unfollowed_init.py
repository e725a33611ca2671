"""Why an ``init`` of the file is no init site the conversion follows: it is called on a
name that no ``name = Model(...)`` earlier in the same function binds -- a parameter
(flax's sst2 ``get_initial_params(rng, model)``) or a model built in an enclosing scope
(nlp_seq's jitted ``initialize_variables`` closure, linen_design_test's module-level
``model``).  The reason names the line, so the user sees which ``init`` to restructure."""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst
from nnxlint.context import walk
from nnxlint.conversion.base import line_of


def unfollowed_init(module: cst.Module, calls: Sequence[cst.Call]) -> Optional[str]:
    """``: `model.init(...)` at line N is called on `model`, ...`` for the first
    ``name.init(key, x, ...)`` of ``calls`` (an optax ``tx.init(params)`` has one argument)."""
    for call in calls:
        func = call.func
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and len(call.args) >= 2):
            continue
        name = func.value.value
        function = _enclosing_function(module, call)
        where = f"`{name}.{func.attr.value}(...)` at line {line_of(module, call)} is called on `{name}`"
        if function is None:
            return f"{where}, not on a model built by a Linen class of the run just before"
        if any(param.name.value == name for param in walk(function.params) if isinstance(param, cst.Param)):
            return f"{where}, a parameter of `{function.name.value}`, not on a model built in the same function"
        return f"{where}, not on a model built in the same function (`{function.name.value}`)"
    return None


def _enclosing_function(module: cst.Module, node: cst.CSTNode) -> Optional[cst.FunctionDef]:
    innermost = None
    for candidate in walk(module):
        if isinstance(candidate, cst.FunctionDef) and any(child is node for child in walk(candidate.body)):
            innermost = candidate  # walk goes outside in: the last match is the innermost
    return innermost

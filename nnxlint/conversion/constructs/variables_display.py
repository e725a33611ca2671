"""Linen variables shown to the user, as demo and notebook code does::

    variables = model.init(key, x)
    print(jax.tree_util.tree_map(jnp.shape, variables))
    pprint(variables)

NNX keeps the variables in the model: ``nnx.state(model)`` is the tree that
``init`` returned (``nnx.state(model, nnx.Param)`` for its ``'params'``), with
the same arrays under the same names (Linen's auto-names in NNX's spelling,
``Dense_0`` -> ``dense_0``)::

    print(jax.tree_util.tree_map(jnp.shape, nnx.state(model)))

Converted only as an argument of ``print``/``pprint`` or of a ``tree_map`` whose
result is itself only printed: the program's computation does not change, only
the printed text (an ``nnx.State`` is printed, not a dict).  Any other use of
the variables keeps the finding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

if TYPE_CHECKING:
    from nnxlint.conversion.training import TrainingRewriter

_PRINTERS = frozenset({"pprint.pprint", "pprint.pp"})
_TREE_MAPS = frozenset({"jax.tree_util.tree_map", "jax.tree.map"})
# the role of a Linen variables name -> the NNX Variable type ``nnx.state`` filters by (None: all)
_STATE_FILTERS = {"variables": None, "params": "Param", "batch_stats": "BatchStat"}


def displayed_variables(rewriter: TrainingRewriter, original: cst.Call, updated: cst.Call) -> Optional[cst.Call]:
    """``print(variables)`` -> ``print(nnx.state(model))``; None when ``original`` is no such display."""
    if not _is_printer(rewriter, original.func):
        return None
    args = list(updated.args)
    changed = False
    for index, arg in enumerate(original.args):
        value = arg.value
        if isinstance(value, cst.Call) and _is_shape_map(rewriter, value):
            state = _state(rewriter, value.args[1].value)
            if state is not None:
                inner = updated.args[index].value
                assert isinstance(inner, cst.Call)
                new_inner = inner.with_changes(args=[inner.args[0], inner.args[1].with_changes(value=state)])
                args[index] = args[index].with_changes(value=new_inner)
                changed = True
            continue
        state = _state(rewriter, value) if arg.keyword is None else None
        if state is not None:
            args[index] = args[index].with_changes(value=state)
            changed = True
    return updated.with_changes(args=args) if changed else None


def _is_printer(rewriter: TrainingRewriter, func: cst.BaseExpression) -> bool:
    if isinstance(func, cst.Name) and func.value == "print":
        return rewriter.env.resolve(func) in (None, "print", "builtins.print")
    return rewriter.env.resolve(func) in _PRINTERS


def _is_shape_map(rewriter: TrainingRewriter, call: cst.Call) -> bool:
    """``jax.tree_util.tree_map(f, variables)``: two positional arguments."""
    return rewriter.env.resolve(call.func) in _TREE_MAPS and len(call.args) == 2 \
        and all(arg.keyword is None and not arg.star for arg in call.args)


def _state(rewriter: TrainingRewriter, value: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    role = rewriter.role(value) if isinstance(value, cst.Name) else None
    if role not in _STATE_FILTERS:
        return None
    nnx = rewriter.nnx
    kind = _STATE_FILTERS[role]
    filtered = f", {nnx}.{kind}" if kind else ""
    return cst.parse_expression(f"{nnx}.state({rewriter.model}{filtered})")

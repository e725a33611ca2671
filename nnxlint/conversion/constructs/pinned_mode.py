"""A submodule always called in eval mode: without its train/eval argument, whose
default is eval, or with the eval value written out::

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, training: bool = False):
            ...nn.Dropout(rate)(x, deterministic=not training)...

    class Critic(nn.Module):
        @nn.compact
        def __call__(self, x):
            return MLP(...)(x)          # always deterministic in Linen

The converted ``MLP`` follows the module's mode (``model.train()`` / ``model.eval()``),
which the parent sets for all its submodules; to keep this call deterministic
whatever the parent's mode, it runs on an eval view of the submodule, the same
arrays with the flags ``Module.eval()`` sets::

    return nnx.view(self.mlp_0, deterministic=True, use_running_average=True,
                    raise_if_not_found=False)(x)

Refused, with the reason: a submodule always called in train mode (a view's batch
statistics updates would be lost to the module), an argument fixed for the module
but not a literal, and a class holding a layer with a constant flag of its own
(which the view would override).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import libcst as cst

from nnxlint.conversion.base import Mode, Unconvertible, drop_args

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


def pinned_eval_call(rewriter: "CallRewriter", child_mode: Mode, given: Optional[cst.Arg], call: cst.Call,
                     is_mode: Callable[[int, Optional[str]], bool]) -> cst.Call:
    """``call`` of a submodule whose mode argument is left to its default or a literal."""
    value = child_mode.default if given is None else _literal(given.value)
    if value is None:
        raise Unconvertible("a submodule is called without its train/eval argument, which has no default"
                            if given is None else
                            "a submodule is called with a train/eval argument fixed for the module that is not "
                            "a literal")
    if value != child_mode.eval_value:
        raise Unconvertible("a submodule always called in train mode is not converted (an NNX view in train "
                            "mode would not keep its batch statistics updates)")
    if rewriter.converter.constant_flags:
        raise Unconvertible("a submodule always called in eval mode, in a class with a layer of constant "
                            "train/eval flag, is not converted (the eval view would override that flag)")
    nnx = rewriter.converter.env.nnx
    view = cst.parse_expression(f"{nnx}.view({rewriter.converter.env.code(call.func)}, deterministic=True, "
                                "use_running_average=True, raise_if_not_found=False)")
    return drop_args(call, is_mode).with_changes(func=view)


def _literal(node: cst.BaseExpression) -> Optional[bool]:
    """``True`` / ``not False`` -> its value; None for anything else."""
    negated = False
    while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        negated, node = not negated, node.expression
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return (node.value == "True") != negated
    return None

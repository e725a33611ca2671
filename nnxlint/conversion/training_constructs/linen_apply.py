"""``nn.apply(fn, Model(...))(variables)``: Linen runs ``fn`` with the module bound to
``variables`` (flax's vae evaluates through ``nn.apply(eval_model, models.model(latents))
({'params': params})``).  The NNX model holds its variables, so the call is
``fn(model)``; ``fn`` calls the model as it did the bound module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.training_constructs.fresh_model import check_same_model, is_fresh_model

if TYPE_CHECKING:
    from nnxlint.conversion.training import TrainingRewriter

LINEN_APPLY = "flax.linen.apply"


def bound_function_call(rewriter: "TrainingRewriter", original: cst.Call, updated: cst.Call) -> Optional[cst.Call]:
    """``fn(model)`` for ``nn.apply(fn, Model(...))(variables)``; None for any other call."""
    from nnxlint.conversion.training import MODEL_ROLES

    inner = original.func
    if not isinstance(inner, cst.Call) or rewriter.env.resolve(inner.func) != LINEN_APPLY:
        return None
    code = rewriter.env.code(original)
    if len(inner.args) != 2 or any(arg.keyword is not None or arg.star for arg in inner.args) \
            or len(original.args) != 1 or original.args[0].keyword is not None:
        raise Unconvertible(f"`{code}`: only `nn.apply(fn, model)(variables)` is converted")
    model = inner.args[1].value
    if not is_fresh_model(rewriter.analysis, model):
        raise Unconvertible(f"`{code}` applies a module other than the model `init` builds")
    rewriter.freed_params |= check_same_model(rewriter.analysis, model)  # type: ignore[arg-type]
    if rewriter.role(original.args[0].value) not in MODEL_ROLES:
        raise Unconvertible(f"`{code}` with variables the conversion cannot trace to `init`")
    if rewriter.mode is not None:  # ``fn`` would still pass the flag the NNX model no longer takes
        raise Unconvertible(f"`{code}`: the model's `{rewriter.mode.name}` flag is not converted inside `fn`")
    function = updated.func.args[0].value  # type: ignore[attr-defined]
    if not isinstance(function, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) and not function.lpar:
        function = function.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])  # ``(lambda v: ...)(model)``
    return cst.Call(function, [cst.Arg(cst.Name(rewriter.model))], lpar=updated.lpar, rpar=updated.rpar)

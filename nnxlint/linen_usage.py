"""Recognising Linen objects in user code, for the Linen training-idiom rules.

Shared by NNX003-NNX006: which expressions are Linen module instances, and
which names refer to Linen's lifted transforms.  Imports only libcst.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.context import FileContext
from nnxlint.flax_api import FLAX_LINEN, FLAX_NNX, LINEN_MODULE_BASES, is_linen

# Linen's lifted transforms and scope tools, with the NNX counterpart to suggest.
LINEN_TRANSFORMS = {
    "scan": "nnx.scan (over layers: nnx.vmap to create them, nnx.scan to apply them)",
    "vmap": "nnx.vmap (with nnx.split_rngs / rngs.split for per-layer keys)",
    "remat": "nnx.remat", "checkpoint": "nnx.remat",
    "jit": "nnx.jit", "cond": "nnx.cond", "switch": "nnx.switch", "while_loop": "nnx.while_loop",
    "fori_loop": "nnx.fori_loop", "map_variables": "plain Python on the module's Variables",
    "share_scope": "assigning the shared submodule to both owners", "named_call": "a plain call",
    "custom_vjp": "nnx.custom_vjp", "jvp": "jax.jvp over nnx.split state", "vjp": "nnx.vjp",
    "grad": "nnx.grad", "value_and_grad": "nnx.value_and_grad", "add_metadata_axis": "nnx.vmap's transform_metadata",
}


def is_linen_class(context: FileContext, node: cst.BaseExpression) -> bool:
    """``node`` names a Linen layer (``nn.Dense``) or a class of the file that
    subclasses ``flax.linen.Module``."""
    qualified = context.resolve(node)
    if qualified and qualified.startswith(FLAX_LINEN + ".") and qualified.rpartition(".")[2][:1].isupper():
        return True
    if isinstance(node, cst.Name):
        binding = context.lookup(node.value)
        if binding is not None and isinstance(binding.node, cst.ClassDef):
            return any(_is_linen_base(context, base.value) for base in binding.node.bases)
    return False


def _is_linen_base(context: FileContext, base: cst.BaseExpression) -> bool:
    return context.resolve(base) in LINEN_MODULE_BASES or (
        isinstance(base, cst.Name) and base.value != "Module" and is_linen_class(context, base))


def is_linen_instance(context: FileContext, node: cst.BaseExpression) -> bool:
    """``MLP(...)``, or a name the current scope binds to ``MLP(...)`` once; with the
    project index also a model of a Linen class of another file, returned by a function
    or passed to a parameter by every call site."""
    return linen_receiver(context, node) is True


def linen_receiver(context: FileContext, node: cst.BaseExpression) -> Optional[bool]:
    """True when ``node`` holds a Linen module instance, False when it is known to hold
    something else (an NNX module, an ``nnx.bridge`` module, an instance of a class with
    its own ``apply``), None when unknown."""
    func = node.func if isinstance(node, cst.Call) else None
    if isinstance(node, cst.Name):  # bound to a construction
        binding = context.lookup(node.value)
        value = _assigned_value(binding.node) if binding is not None else None
        func = value.func if isinstance(value, cst.Call) else None
    if func is not None and is_linen_class(context, func):
        return True
    from nnxlint.analysis import LINEN, kind_of  # the analysis builds on the engine's context

    kind = kind_of(context, node)
    if kind is not None:
        return kind.category == LINEN
    if func is not None and (context.project_class(func) is not None or _defines_class(context, func)):
        return False  # an instance of a class that is no Linen module (``nnx.bridge``, its own ``apply``)
    return None


def imports_linen(context: FileContext) -> bool:
    """Whether the file imports flax.linen (or something from it) at module level."""
    return any(is_linen(binding.qualified_name) for bindings in context.module_scope.bindings.values()
               for binding in bindings)


def _defines_class(context: FileContext, func: cst.BaseExpression) -> bool:
    """``func`` names a class that is no Linen module: one of the file's, or of flax.nnx."""
    if isinstance(func, cst.Name):
        binding = context.lookup(func.value)
        return binding is not None and isinstance(binding.node, cst.ClassDef)
    return (context.resolve(func) or "").startswith(FLAX_NNX + ".")


def _assigned_value(node: Optional[cst.CSTNode]) -> Optional[cst.BaseExpression]:
    if isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
        return node.value
    return None


def linen_transform(context: FileContext, node: cst.BaseExpression) -> Optional[str]:
    """``'scan'`` for ``nn.scan`` (any alias), when it is one of Linen's lifted transforms."""
    qualified = context.resolve(node)
    if not is_linen(qualified):
        return None
    member = qualified.rpartition(".")[2]  # type: ignore[union-attr]
    return member if member in LINEN_TRANSFORMS else None

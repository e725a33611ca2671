"""A bridged model that decodes through Linen's ``cache`` collection.

Linen training code keeps decoding with a cache on a converted model::

    cache = models.TransformerLM(decode_config).init(key, jnp.ones(shape))['cache']
    logits, updates = models.TransformerLM(decode_config).apply(
        {'params': params, 'cache': cache}, token, mutable=['cache'])

Linen's ``init`` made each decoding attention's cache for the inputs that attention
saw; an NNX ``nnx.MultiHeadAttention`` gets it from ``init_cache``, for a shape it is
told.  In a file that threads a ``cache`` collection (``mutable=['cache']``), every
bridged construction goes through a Linen module written once after the imports::

    models.TransformerLM(decode_config)
    ->
    to_linen_decoding(models.TransformerLM, decode_config)

``ToLinenDecoding`` is an ``nnx.bridge.ToLinen`` whose ``init`` runs the model once with
its attentions not decoding, to see their inputs (as Linen's did: each attention's class
is, for that run only, a subclass of its own recording them), puts back what
that run moved (a position embedding's cache index), and makes each cache with
``init_cache`` before it stores the variables: ``cache`` holds them with the shapes
Linen's had.  Its ``apply`` makes the caches before it loads the variables, so the
``cache`` collection given fills them; ``mutable=['cache']`` returns the moved ones.
The parameters are laid out as ``nnx.bridge.to_linen(..., metadata_fn=None)`` lays
them out.  ``init``'s output is that of the run with decoding off (Linen's ``init``
of a decoding model gave its own first-pass output, which no training code reads).

Refused with the bridge (``to_linen.py``): a class whose input sizes are read off the
inputs (``to_linen_sized``), and a file that binds the helper's names otherwise.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint import names
from nnxlint.context import walk
from nnxlint.conversion.constructs import to_linen_sized

FUNCTION = "to_linen_decoding"
CLASS = "ToLinenDecoding"
COLLECTION = "cache"


def decodes(module: cst.Module, text: str) -> bool:
    """Whether the file (``module``, of ``text``) threads Linen's ``cache`` collection
    (``mutable=['cache']``); its text is searched first, so most files are not walked."""
    return "mutable" in text and COLLECTION in text and any(
        isinstance(node, cst.Arg) and node.keyword is not None and node.keyword.value == "mutable"
        and COLLECTION in module.code_for_node(node.value) for node in walk(module))


def helper(module: cst.Module, linen: str, nnx: str) -> list[cst.BaseStatement]:
    """The Linen module and the function that ``to_linen_decoding`` constructions call,
    in the module's indentation and newlines."""
    lines = [f"class {CLASS}({nnx}.bridge.ToLinen):",
             f'    """`{nnx}.bridge.ToLinen` of an NNX model whose attention layers decode through a',
             "    cache: Linen's `init` made each cache for the inputs its attention saw, an NNX",
             "    attention makes it with `init_cache`.  `init` runs the model once with decoding off",
             "    to see those inputs; `apply` makes the caches that its `cache` variables fill.\"\"\"",
             "",
             f"    @{linen}.compact",
             "    def __call__(self, *args, nnx_method=None, **kwargs):",
             "        initializing = self.is_initializing()",
             "        rngs = {name: self.make_rng(name) for name in self.scope.rngs}",
             "        if not initializing:",
             '            rngs.setdefault("default", 0)',
             f'        options = {{}} if self.skip_rng else {{"rngs": {nnx}.Rngs(**rngs)}}',
             "        model = self.nnx_class(*self.args, **self.kwargs, **options)",
             '        method = nnx_method if callable(nnx_method) else getattr(type(model), nnx_method or "__call__")',
             f"        layers = [layer for _, layer in {nnx}.iter_modules(model)]",
             f"        attentions = [layer for layer in layers if isinstance(layer, {nnx}.MultiHeadAttention) and layer.decode]",
             "        if initializing and attentions:",
             "            out = self.make_caches(model, attentions, lambda: method(model, *args, **kwargs))",
             "            self._update_variables(model)",
             "            return out",
             "        if initializing:  # as `ToLinen`'s: the variables are stored before the call",
             "            self._update_variables(model)",
             "            return method(model, *args, **kwargs)",
             f'        if "{COLLECTION}" in self.variables:',
             "            for layer in attentions:",
             f"                layer.init_cache((1, 1, layer.in_features))  # filled from `{COLLECTION}`",
             f"        {nnx}.update(model, {{}}, *self.variables.values())  # `{{}}`: `apply` may be given none",
             "        out = method(model, *args, **kwargs)",
             "        self._update_variables(model)",
             "        return out",
             "",
             "    @staticmethod",
             "    def make_caches(model, attentions, run):",
             '        """`run()` with the attentions not decoding, then a cache for the inputs each saw."""',
             "        seen, classes = {}, {id(layer): type(layer) for layer in attentions}",
             "",
             "        def seeing(layer, inputs_q, inputs_k=None, inputs_v=None, **kwargs):",
             "            seen[id(layer)] = (inputs_q if inputs_k is None else inputs_k).shape",
             '            kwargs["decode"] = False',
             "            return classes[id(layer)].__call__(layer, inputs_q, inputs_k, inputs_v, **kwargs)",
             "",
             f"        before = {nnx}.to_pure_dict({nnx}.state(model))  # Linen's `init` moved no cache index",
             "        for layer in attentions:  # for this run only: each its own class, recording its inputs",
             '            layer.__class__ = type("Seeing", (classes[id(layer)],), {"__call__": seeing})',
             "        try:",
             "            out = run()",
             "        finally:",
             "            for layer in attentions:",
             "                layer.__class__ = classes[id(layer)]",
             f"        {nnx}.update(model, before)",
             "        for layer in attentions:",
             "            if id(layer) in seen:  # (an attention the run did not reach makes no cache, as in Linen)",
             "                layer.init_cache(seen[id(layer)], layer.dtype or layer.param_dtype)",
             "        return out",
             "",
             "",
             f"def {FUNCTION}(nnx_class, /, *args, skip_rng=False, **kwargs):",
             f'    """`{nnx}.bridge.to_linen` for a model whose attention layers decode through a cache."""',
             f"    bridged = {nnx}.bridge.to_linen(nnx_class, *args, skip_rng=skip_rng, metadata_fn=None, **kwargs)",
             f"    return {CLASS}(bridged.nnx_class, bridged.args, bridged.kwargs, skip_rng, None)",
             ""]
    return to_linen_sized.statements(module, lines)


def problems(module: cst.Module, scope: names.Scope, nnx: str) -> list[tuple[cst.CSTNode, str]]:
    """What stops ``to_linen_decoding`` constructions in the file."""
    return to_linen_sized.helper_problems(module, scope, (CLASS, FUNCTION), _helper_for(module, scope, nnx))


def with_helper(module: cst.Module, scope: names.Scope, nnx: str) -> cst.Module:
    """``module`` with ``ToLinenDecoding`` and ``to_linen_decoding`` after its imports, and
    the import of ``flax.linen`` they may need."""
    needed = {"flax.linen"} if to_linen_sized.spelling(scope, "flax.linen", "linen")[1] else set()
    return to_linen_sized.with_statements(module, _helper_for(module, scope, nnx), needed)


def _helper_for(module: cst.Module, scope: names.Scope, nnx: str) -> list[cst.BaseStatement]:
    linen: Optional[str] = to_linen_sized.spelling(scope, "flax.linen", "linen")[0]
    return helper(module, linen or "linen", nnx)

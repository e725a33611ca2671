"""Training code the stateful conversion cannot follow, converted functionally.

RL code in the purejaxrl style carries its ``TrainState`` through ``jax.lax.scan`` in
tuples (``train_state, env_state, last_obs, rng = runner_state``), which the role
analysis of nnxlint/conversion/training.py cannot follow into ``model`` and
``optimizer`` objects.  Such code needs no NNX objects to flow through it: the model
is built as NNX where ``init`` was and split once (``model_graphdef, params =
nnx.split(model)``), and every ``model.apply(params, x)`` becomes
``nnx.merge(model_graphdef, params)(x)``, so the weights live on where the code keeps
them, as a pytree in its ``TrainState``.

Correct only for a model whose variables are its parameters: a layer with state
beyond them (batch statistics, a dropout RNG stream) would be rebuilt from the same
state at every ``merge``, so such models are refused, as are ``apply`` calls with
Linen-only keywords (``rngs``, ``mutable``, ``method``).  Linen's
``{'params': params}`` wrapping maps to the NNX state itself: ``variables['params']``
and ``apply({'params': p}, x)`` both become the state.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import ConvertedClass, FileEnv, Unconvertible
from nnxlint.conversion.blank_lines import KeepsBlankLines
from nnxlint.conversion.shapes import string_literal
from nnxlint.conversion.training_constructs.model_creation import creation_lines, drop_construction, parsed_statement
from nnxlint.flax_api import RNGS_OPTIONAL_LAYERS, STATEFUL_LAYERS

# ``apply`` keywords that only Linen understands: their meaning has no place in a plain call
_LINEN_APPLY_KEYWORDS = ("rngs", "mutable", "method", "capture_intermediates")
PARAMS_KEY = "params"


def check_parameters_only(env: FileEnv, classes: list[ConvertedClass]) -> None:
    """Refuses models holding NNX state other than parameters (the layers of
    ``STATEFUL_LAYERS``, those keeping an RNG stream, custom variables, Linen layers
    kept through the bridge)."""
    if env.custom_collections:
        raise Unconvertible(f"the model keeps `{sorted(env.custom_collections)[0]}` variables")
    for converted in classes:
        if converted.bridged:
            raise Unconvertible(f"`{converted.name}` keeps a Linen layer through `nnx.bridge`")
        for layer in _layers_built(converted.node, env.nnx):
            if layer in STATEFUL_LAYERS or layer in RNGS_OPTIONAL_LAYERS:
                raise Unconvertible(f"`{converted.name}` holds an `{env.nnx}.{layer}`, whose state "
                                    "`nnx.merge` would rebuild at every call")


def _layers_built(node: cst.CSTNode, nnx: str) -> set[str]:
    """The ``nnx.<name>`` the converted class names: built, or handed to ``partial``."""
    return {child.attr.value for child in walk(node) if isinstance(child, cst.Attribute)
            and isinstance(child.value, cst.Name) and child.value.value == nnx}


def _params_display(node: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``p`` of a ``{'params': p}`` display, or None."""
    if isinstance(node, cst.Dict) and len(node.elements) == 1:
        element = node.elements[0]
        if isinstance(element, cst.DictElement) and string_literal(element.key) == PARAMS_KEY:
            return element.value
    return None


class SplitMergeRewriter(KeepsBlankLines, cst.CSTTransformer):
    """Rewrites the init statement into the NNX construction and one ``nnx.split``,
    and every use of the Linen model into ``nnx.merge``."""

    def __init__(self, env: FileEnv, site, owner: cst.CSTNode, target: str, converted: ConvertedClass,
                 construction: str, graphdef: str) -> None:
        super().__init__()
        self.env = env
        self.site = site
        # the function building the model (or the module): only there, and in the functions it
        # holds, are the model and ``graphdef`` the ones the conversion made
        self.owner = owner
        self.functions: list[cst.FunctionDef] = []  # the functions around the current node
        self.converted = converted
        self.construction = construction
        self.model = site.model_name
        self.graphdef = graphdef
        self.nnx = env.nnx
        self.target = target  # ``variables`` of ``variables = model.init(...)``
        self.called: set[int] = set()  # id(func) of every call: ``model.apply`` not called is a reference
        self.unwrapped: set[int] = set()  # id of the ``{'params': p}`` displays passed to ``apply``
        self.other_names: set[int] = set()  # id of Names that are no read of a variable (``x.model``, ``f(model=1)``)
        self.applies: set[int] = set()  # id of the model's Name in ``model.apply``
        self.removed_lines: dict[int, list[cst.EmptyLine]] = {}  # ``blank_lines.KeepsBlankLines``

    def _merged(self, state: cst.BaseExpression) -> cst.BaseExpression:
        return cst.parse_expression(f"{self.nnx}.merge({self.graphdef}, {self.env.code(state)})")

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine):
        if original_node is self.site.construction_statement:
            return drop_construction(original_node, self.removed_lines)
        if original_node is not self.site.statement:
            return updated_node
        lines = creation_lines(self.env, self.site, self.converted, self.construction, original_node,
                               self.removed_lines)
        split = parsed_statement(self.env, f"{self.graphdef}, {self.target} = {self.nnx}.split({self.model})")
        return cst.FlattenSentinel([*lines, split.with_changes(trailing_whitespace=original_node.trailing_whitespace)])

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return node is not self.site.statement and node is not self.site.construction_statement  # both replaced

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node)
        self.other_names.add(id(node.name))

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        self.functions.pop()
        return updated_node

    def visit_Param(self, node: cst.Param) -> None:
        self.other_names.add(id(node.name))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.other_names.add(id(node.keyword))

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.other_names.add(id(node.attr))
        if node.attr.value == "apply" and self._is_model(node.value):
            self.applies.add(id(node.value))

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if original_node.value != self.model or id(original_node) in self.other_names:
            return updated_node
        if id(original_node) not in self.applies:
            raise Unconvertible(f"`{self.model}` is used other than through `{self.model}.apply`, and the NNX "
                                "model has no `apply`")
        if not self._where_built():
            raise Unconvertible(f"`{self.model}.apply` in `{self.functions[-1].name.value}`, outside the function "
                                "that builds the model")
        return updated_node

    def _where_built(self) -> bool:
        return isinstance(self.owner, cst.Module) or any(function is self.owner for function in self.functions)

    def visit_Call(self, node: cst.Call) -> None:
        self.called.add(id(node.func))
        func = node.func
        if node.args and isinstance(func, cst.Attribute) and (
                func.attr.value == "apply_fn" or func.attr.value == "apply" and self._is_model(func.value)):
            self.unwrapped.add(id(node.args[0].value))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = original_node.func
        if not isinstance(func, cst.Attribute):
            return updated_node
        method = func.attr.value
        if method == "apply" and self._is_model(func.value):
            return self._apply(original_node, updated_node)
        # ``state.apply_fn({'params': p}, x)``: ``apply_fn=model.apply`` became a lambda taking the state
        if method == "apply_fn" and updated_node.args:
            unwrapped = _params_display(updated_node.args[0].value)
            if unwrapped is not None:
                first = updated_node.args[0].with_changes(value=unwrapped)
                return updated_node.with_changes(args=[first, *updated_node.args[1:]])
        return updated_node

    def _apply(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        for arg in original.args:
            if arg.keyword is not None and arg.keyword.value in _LINEN_APPLY_KEYWORDS:
                raise Unconvertible(f"`{self.model}.apply(..., {arg.keyword.value}=...)` is not converted "
                                    "without the training code's conversion")
        if not updated.args or updated.args[0].keyword is not None or updated.args[0].star:
            raise Unconvertible(f"`{self.model}.apply` without its variables first")
        state = updated.args[0].value
        state = _params_display(state) or state
        return updated.with_changes(func=self._merged(state), args=updated.args[1:])  # its layout kept

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        if id(original_node) in self.called or not self._is_model(original_node.value):
            return updated_node
        if original_node.attr.value == "apply":  # ``apply_fn=model.apply``: a function of the same contract
            return cst.parse_expression(f"lambda variables, *args, **kwargs: "
                                        f"{self.nnx}.merge({self.graphdef}, variables)(*args, **kwargs)")
        return updated_node

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        value = original_node.value
        if not (isinstance(value, cst.Name) and value.value == self.target):
            return updated_node
        keys = [element.slice.value for element in original_node.slice if isinstance(element.slice, cst.Index)]
        if len(keys) == 1 and string_literal(keys[0]) == PARAMS_KEY and self._where_built():
            return updated_node.value  # the NNX state holds the parameters alone
        raise Unconvertible(f"`{self.env.code(original_node)}`: the model's variables are read "
                            "in a way the conversion does not follow")

    def leave_Dict(self, original_node: cst.Dict, updated_node: cst.Dict) -> cst.BaseExpression:
        if _params_display(original_node) is not None and id(original_node) not in self.unwrapped:
            raise Unconvertible(f"`{self.env.code(original_node)}` wraps parameters the Linen way "
                                "outside an `apply`")
        return updated_node

    def _is_model(self, node: cst.BaseExpression) -> bool:
        return isinstance(node, cst.Name) and node.value == self.model

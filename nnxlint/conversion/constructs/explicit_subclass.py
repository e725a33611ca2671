"""A subclass of another Linen class that only gives it its input size, the
explicit-init style of Flax's ``linen_design_test/mlp_explicit.py``::

    class DenseExplicit(Dense):
        in_features: Optional[int] = None

        def setup(self):
            self.__call__(jnp.zeros((1, self.in_features)))  # creates the parameters now

Linen runs the parent's ``__call__`` on a dummy batch so that the parameters
exist before any real input.  NNX creates them in ``__init__`` anyway, from the
input size the converted parent takes as a constructor parameter; the subclass
passes its field there::

    class DenseExplicit(Dense):
        def __init__(self, *args, in_features: Optional[int] = None, rngs: nnx.Rngs, **kwargs):
            super().__init__(in_features, *args, rngs=rngs, **kwargs)

(the parent's own arguments pass through as the caller gives them; the
subclass's fields are keyword-only, so a caller passing one by position fails
loudly rather than landing in a parent's argument).
Flax 0.12.8 itself rejects the Linen style (``setup`` may not call a compact
method: ``CallCompactUnboundModuleError`` at ``init``), so there is no Linen run
to match; the NNX class does what the style means, which is the parent built
with the same arguments: the forward pass is the parent's, from the same
parameters under the same names (the subclass's scope is the parent's:
``kernel``, ``bias``).  Converted only for exactly that shape: fields, and a
``setup`` whose one statement calls ``self.__call__`` on ``jnp.zeros``/``jnp.ones``
of a literal shape whose last axis is one of the subclass's fields; the parent
is a Linen class of the file or of another file of the run that converts on its
own terms.  Anything else keeps the finding.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.imports import is_docstring
from nnxlint.conversion.base import ConvertedClass, Unconvertible, function_params, self_attribute
from nnxlint.conversion.shapes import int_literal

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter

_DUMMY_ARRAYS = frozenset({"jax.numpy.zeros", "jax.numpy.ones"})


def linen_parent(converter: ClassConverter) -> Optional[str]:
    """The Linen class (of the file or another file of the run) that the class subclasses, or None."""
    bases = converter.node.bases
    if len(bases) != 1 or converter.node.keywords or not isinstance(bases[0].value, (cst.Name, cst.Attribute)):
        return None
    spelling = converter.env.code(bases[0].value)
    env = converter.env
    if spelling in env.foreign_classes or (spelling in env.linen_classes and spelling != converter.node.name.value):
        return spelling
    return None


def convert_explicit_subclass(converter: ClassConverter, parent: str) -> ConvertedClass:
    node = converter.node
    name = node.name.value
    body = list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
    setup = None
    for statement in body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == "setup" and setup is None:
            setup = statement
        elif converter._is_field(statement):
            converter._add_field(statement)  # type: ignore[arg-type]
        elif not is_docstring(statement):
            raise Unconvertible(f"`{name}` subclasses the Linen class `{parent}`: only fields and a `setup` that "
                                "calls `self.__call__` on a dummy batch (the explicit-init style) are converted")
    if setup is None:
        raise Unconvertible(f"`{name}` subclasses the Linen class `{parent}` without the explicit-init `setup`: "
                            "not converted")
    size_field = _dummy_batch_field(converter, setup)
    base = converter.env.convert_class(parent, None, None)
    if len(base.size_params) != 1 or base.layer_size_params:
        raise Unconvertible(f"`{name}` gives `{parent}` one input size, but the converted `{parent}` takes "
                            f"{len(base.size_params) + len(base.layer_size_params)}")
    own = {field.name for field in converter.fields}
    clash = next((field.name for field in base.fields if field.name in own), None)
    if clash is not None:
        raise Unconvertible(f"`{name}` declares the field `{clash}` of `{parent}` again")
    fields = [*base.fields, *converter.fields]
    # the rest as the parent's: what it drops, the Linen layers it bridges, ... (its input size is a field now)
    return replace(base, name=name, node=_nnx_class(converter, base, size_field), size_params={}, fields=fields,
                   size_axes={})


def _dummy_batch_field(converter: ClassConverter, setup: cst.FunctionDef) -> str:
    """``self.__call__(jnp.zeros((1, self.in_features)))`` -> ``in_features``."""
    name = converter.node.name.value
    refusal = Unconvertible(f"`{name}`'s `setup` does more than `self.__call__(jnp.zeros((1, self.<field>)))`, "
                            "the explicit-init style: not converted")
    statements = setup.body.body if isinstance(setup.body, cst.IndentedBlock) else ()
    if len(function_params(setup)) != 1 or setup.decorators or len(statements) != 1 \
            or not isinstance(statements[0], cst.SimpleStatementLine) or len(statements[0].body) != 1 \
            or not isinstance(statements[0].body[0], cst.Expr):
        raise refusal
    call = statements[0].body[0].value
    if not (isinstance(call, cst.Call) and self_attribute(call.func) == "__call__" and len(call.args) == 1
            and call.args[0].keyword is None and isinstance(call.args[0].value, cst.Call)):
        raise refusal
    dummy = call.args[0].value
    if converter.env.resolve(dummy.func) not in _DUMMY_ARRAYS or len(dummy.args) != 1 \
            or dummy.args[0].keyword is not None or not isinstance(dummy.args[0].value, cst.Tuple):
        raise refusal
    axes = [element.value for element in dummy.args[0].value.elements]
    size = self_attribute(axes[-1]) if axes else None
    if size not in converter.field_names or any(int_literal(axis) is None for axis in axes[:-1]):
        raise refusal
    return size  # type: ignore[return-value]


def _nnx_class(converter: ClassConverter, base: ConvertedClass, size_field: str) -> cst.ClassDef:
    """The parent's own arguments pass through as given (its annotations and defaults are
    the parent file's); the subclass's fields are keyword-only."""
    env = converter.env
    signature = ["self", "*args"]
    for field in converter.fields:
        text = field.name + (f": {field.annotation}" if field.annotation else "")
        signature.append(text + (f" = {field.default}" if field.default is not None else ""))
    passed = [size_field, "*args"]
    if base.uses_rngs:
        signature.append(f"rngs: {env.nnx}.Rngs")
        passed.append("rngs=rngs")
    signature.append("**kwargs")
    passed.append("**kwargs")
    indent, newline = env.module.default_indent, env.module.default_newline
    own = "".join(f"{indent}self.{field.name} = {field.name}{newline}" for field in converter.fields
                  if field.name != size_field)
    text = (f"def __init__({', '.join(signature)}):{newline}"
            f"{indent}super().__init__({', '.join(passed)}){newline}{own}")
    init = cst.parse_statement(text, config=env.module.config_for_parsing)
    node = converter.node
    statements = list(node.body.body)  # type: ignore[union-attr]
    docstring = [statement for statement in statements if is_docstring(statement)]
    first = next(statement for statement in statements if not is_docstring(statement))
    init = init.with_changes(leading_lines=first.leading_lines)
    return node.with_changes(body=node.body.with_changes(body=[*docstring, init]))


"""``x: T = field(default=...)`` / ``field(default_factory=...)`` (``dataclasses`` or
``flax.struct``) on a Linen Module: the constructor parameter and its default.

``default=v`` is the parameter's default.  A factory runs once per instance, as the
dataclass runs it: the parameter defaults to ``None`` and ``__init__`` starts with
``if x is None: x = <factory call>`` (so a caller passing ``None`` on purpose now gets
the factory's value; docs/linen-conversion.md says so).  Arguments that only
change the dataclass's ``repr``/``eq``/``hash`` or carry metadata are dropped; a field
left out of the constructor (``init=False``) or keyword-only is not converted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import InitParam, Unconvertible, arg_keyword

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter

FIELD_FUNCTIONS = ("dataclasses.field", "flax.struct.field")
# field() arguments with no meaning for a constructor parameter
_DROPPED = frozenset({"repr", "compare", "hash", "metadata", "pytree_node"})


def is_field_call(converter: "ClassConverter", value: cst.BaseExpression) -> bool:
    return isinstance(value, cst.Call) and converter.env.resolve(value.func) in FIELD_FUNCTIONS


def field_parameter(converter: "ClassConverter", name: str, annotation: Optional[str],
                    call: cst.Call) -> InitParam:
    """The ``__init__`` parameter for ``name: annotation = field(...)``."""
    keywords = {}
    for arg in call.args:
        keyword = arg_keyword(arg)
        if keyword is None or arg.star:
            raise Unconvertible(f"field `{name}`: `field(...)` with positional or starred arguments")
        keywords[keyword] = arg.value
    unknown = sorted(set(keywords) - _DROPPED - {"default", "default_factory"})
    if unknown:
        raise Unconvertible(f"field `{name}`: `field({unknown[0]}=...)` is not converted")
    if "default" in keywords:
        return InitParam(name, annotation, converter.init_code(keywords["default"], {}))
    if "default_factory" not in keywords:
        return InitParam(name, annotation, None)
    factory = keywords["default_factory"]
    if isinstance(factory, cst.Lambda):
        if factory.params.params or factory.params.star_arg is not cst.MaybeSentinel.DEFAULT \
                or factory.params.kwonly_params or factory.params.star_kwarg or factory.params.posonly_params:
            raise Unconvertible(f"field `{name}`: a `default_factory` lambda that takes arguments")
        value = converter.init_code(factory.body, {})
    else:
        value = f"{converter.init_code(factory, {})}()"
    return InitParam(name, annotation, "None", factory=value)


def factory_lines(fields: list[InitParam], indent: str) -> list[str]:
    """The first lines of ``__init__``: each factory default made for this instance."""
    return [f"if {param.name} is None:\n{indent}{param.name} = {param.factory}"
            for param in fields if param.factory is not None]

"""``self.variable('batch_stats', 'mean', init, *args)`` ->
``self.mean = nnx.BatchStat(init(*args))``, read and written as ``self.mean[...]``
(a collection of the user's own gets an ``nnx.Variable`` subclass named after it).
The reads and writes of ``.value`` are followed by ``CallRewriter``."""

from __future__ import annotations

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, Unconvertible, arg_keyword
from nnxlint.conversion.constructs import SelfCall, self_call
from nnxlint.conversion.linen_map import VARIABLE_TYPES, custom_variable_type
from nnxlint.conversion.shapes import Shape, string_literal


@self_call("variable")
class Variable(SelfCall):
    def in_setup(self, converter, attribute: str, call: cst.Call) -> None:
        if self._add(converter, call, {}) != attribute:
            raise Unconvertible(f"`self.{attribute} = self.variable(...)` under another name")

    def in_call(self, rewriter, call: cst.Call) -> cst.BaseExpression:
        if id(call) not in rewriter.assigned_values:
            raise Unconvertible("`self.variable` inside an expression: assign it to a name first")
        converter = rewriter.converter
        name = self._add(converter, call, rewriter.shapes)
        if rewriter.depth:  # made where a branch on fields is taken: so in ``__init__``
            if rewriter.depth != len(rewriter.conditions) or None in rewriter.conditions:
                raise Unconvertible("`self.variable` inside a loop, or in a branch on a value of `__call__`, "
                                    "is not converted")
            guard = " and ".join(rewriter.conditions)
            converter.variables[name] = f"if {guard}:\n{converter.env.module.default_indent}{converter.variables[name]}"
        return cst.parse_expression(f"self.{name}")

    @staticmethod
    def _add(converter, call: cst.Call, shapes: dict[str, Shape]) -> str:
        """Records the ``__init__`` line; returns the attribute."""
        args = list(call.args)
        if len(args) < 3 or any(arg_keyword(arg) or arg.star for arg in args):
            raise Unconvertible("`self.variable` needs a collection, a name and an init function, "
                                "without keyword or starred arguments")
        collection, name = string_literal(args[0].value), string_literal(args[1].value)
        if collection is None or not IDENTIFIER.fullmatch(collection):
            raise Unconvertible("`self.variable` needs a literal collection name that is an identifier")
        if name is None or not IDENTIFIER.fullmatch(name):
            raise Unconvertible("`self.variable` needs a literal name that is an identifier")
        # Linen keeps each collection apart; NNX attributes share one namespace
        if name in converter.params or name in converter.slots or name in converter.variables \
                or name in converter.field_names:
            raise Unconvertible(f"`{name}` is created twice")
        init_function = args[2].value
        init_args = [converter.init_code(arg.value, shapes) for arg in args[3:]]
        if isinstance(init_function, cst.Lambda) and not init_args and not init_function.params.params:
            value = converter.init_code(init_function.body, shapes)  # ``lambda: jnp.zeros(())``: its body
        else:
            init = converter.init_code(init_function, shapes)
            init = f"({init})" if isinstance(init_function, cst.Lambda) else init
            value = f"{init}({', '.join(init_args)})"
        env = converter.env
        if collection in VARIABLE_TYPES:
            variable_type = f"{env.nnx}.{VARIABLE_TYPES[collection]}"
        else:
            variable_type = custom_variable_type(collection)
            env.custom_collections[collection] = variable_type
            if list(env.custom_collections.values()).count(variable_type) > 1:  # ``ema_stats``, ``ema_Stats``
                raise Unconvertible(f"two collections would share the NNX Variable type `{variable_type}`")
        converter.variables[name] = f"self.{name} = {variable_type}({value})"
        return name

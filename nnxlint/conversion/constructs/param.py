"""``self.param('w', init, *shape)`` -> ``self.w = nnx.Param(init(rngs.params(), *shape))``,
read as ``self.w[...]``.  In ``setup`` under another attribute (``self.weight =
self.param('kernel', ...)``, as Hugging Face-style models write it) the NNX attribute
takes the parameter's name, Linen's variable path, so the transplant loads it by
rule, and every ``self.weight`` of the class reads ``self.kernel``.  A parameter named
by a string field (Gemma's ``Einsum``: ``self.param(self.weight_name, init, shape)``)
is set under that name, ``setattr(self, weight_name, nnx.Param(...))``, and read as
``getattr(self, self.weight_name)[...]``."""

from __future__ import annotations

import libcst as cst

from nnxlint.conversion.axis_shapes import explicit_shape
from nnxlint.conversion.base import IDENTIFIER, Unconvertible, arg_keyword, self_attribute
from nnxlint.conversion.constructs import SelfCall, self_call
from nnxlint.conversion.shapes import Shape, string_literal


@self_call("param")
class Param(SelfCall):
    def in_setup(self, converter, attribute: str, call: cst.Call) -> None:
        self._add(converter, attribute, call, {})

    def in_call(self, rewriter, call: cst.Call) -> cst.BaseExpression:
        # assigned (``w = self.param(...)``) or read in place (``x + self.param('pos', ...)``): the same read
        converter = rewriter.converter
        name = string_literal(call.args[0].value) if call.args else None
        field = self_attribute(call.args[0].value) if call.args and call.args[0].keyword is None else None
        if name is None and field in converter.field_names:  # named by a field: ``self.param(self.weight_name, ...)``
            name, read = f"{field} (a field)", f"getattr(self, self.{field})"
            self._add(converter, name, call, rewriter.shapes, named_by=field)
        elif name is None:
            raise Unconvertible("`self.param` needs a literal name, or a field's")
        else:
            read = f"self.{name}"
            self._add(converter, name, call, rewriter.shapes)
        if len(call.args) > 2 and isinstance(call.args[2].value, (cst.Tuple, cst.List)):  # ``(1, 1, c)``
            written = [element.value for element in call.args[2].value.elements]
            rewriter.call_shapes[id(call)] = explicit_shape(rewriter, written)
        if rewriter.depth:  # made where a branch on fields is taken: so in ``__init__``
            if rewriter.depth != len(rewriter.conditions) or None in rewriter.conditions:
                raise Unconvertible("`self.param` inside a loop, or in a branch on a value of `__call__`, "
                                    "is not converted")
            guard = " and ".join(rewriter.conditions)
            indent = converter.env.module.default_indent
            converter.params[name] = f"if {guard}:\n{indent}{converter.params[name]}"
        return cst.parse_expression(f"{read}[...]")

    @staticmethod
    def _add(converter, attribute: str, call: cst.Call, shapes: dict[str, Shape], named_by: str = "") -> None:
        """``named_by``: the string field that names the parameter (its attribute is set by
        that name, ``setattr(self, weight_name, ...)``, Linen's variable name)."""
        args, keywords = _arguments(call)
        name = attribute if named_by else string_literal(args[0].value)
        if name is None or not (named_by or IDENTIFIER.fullmatch(name)):
            raise Unconvertible("`self.param` needs a literal name that is an identifier")
        if name in converter.params or name in converter.slots or name in converter.variables:
            raise Unconvertible(f"`{name}` is created twice")
        if attribute != name:
            if name in converter.field_names or name in converter.param_aliases:
                raise Unconvertible(f"`self.param({name!r}, ...)` stored as `self.{attribute}`: the class "
                                    f"already has a `{name}`, the attribute NNX needs for it")
            converter.param_aliases[attribute] = name
        init = converter.init_code(args[1].value, shapes)
        if not isinstance(args[1].value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) \
                and not args[1].value.lpar:
            init = f"({init})"  # ``(lambda key: ...)(rngs.params())``
        rest = [converter.init_code(arg.value, shapes) for arg in args[2:]]
        rest += [f"{keyword}={converter.init_code(value, shapes)}" for keyword, value in keywords.items()]
        table = args[2].value if len(args) > 2 else None
        if isinstance(table, cst.Tuple) and len(table.elements) == 2:  # ``(vocab, width)``: rows of a lookup table
            converter.table_widths[name] = converter.size_of(table.elements[1].value, shapes)
        created = f"{converter.env.nnx}.Param({init}({', '.join(['rngs.params()'] + rest)}))"
        converter.params[name] = f"setattr(self, {named_by}, {created})" if named_by else f"self.{name} = {created}"
        converter.uses_rngs = True


def _arguments(call: cst.Call) -> tuple[list[cst.Arg], dict[str, cst.BaseExpression]]:
    """``self.param``'s name, init function and its positional arguments, and the keyword
    arguments Linen hands the init function (``self.param('t', init_fn=f, scale=2)``:
    Linen's signature is ``param(name, init_fn, *init_args, unbox=True, **init_kwargs)``)."""
    positional = [arg for arg in call.args if arg_keyword(arg) is None]
    keywords = {arg_keyword(arg): arg.value for arg in call.args if arg_keyword(arg) is not None}
    if any(arg.star for arg in call.args):
        raise Unconvertible("`self.param` with starred arguments is not converted")
    if "unbox" in keywords:
        raise Unconvertible("`self.param(..., unbox=...)` is not converted (NNX keeps metadata on the variable)")
    for index, keyword in enumerate(("name", "init_fn")):
        if keyword in keywords:
            if len(positional) != index:
                raise Unconvertible(f"`self.param` given `{keyword}` twice")
            positional.append(cst.Arg(keywords.pop(keyword)))
    if len(positional) < 2:
        raise Unconvertible("`self.param` without a name and an init function")
    return positional, keywords

"""A stack of modules built by a Python loop under ``@nn.compact``::

    for i in range(self.depth):
        x = Block(self.width)(x)

Linen names the modules ``Block_0``, ``Block_1``, ... by class and count; NNX
holds them in an ``nnx.List`` named after the class (``naming.nnx_list_name``:
``blocks``), built in ``__init__`` by the same loop and indexed by it where
called::

    self.blocks = nnx.List([Block(width, rngs=rngs) for i in range(depth)])
    ...
    for i in range(self.depth):
        x = self.blocks[i](x)

so ``nnxlint.transplant`` loads ``Block_2`` into ``blocks/2``.  Converted only
where that naming holds and every element is built alike: a ``for <name> in
range(<n>)`` loop, each class created once per iteration, unconditionally, and
nowhere else in the class (or named ``name=f'block_{i}'``, Linen's ``block_2``,
NNX's ``block/2``, as in Flax's lm1b and wmt examples), with inputs whose sizes
the loop does not change (the elements are built from the first iteration's
sizes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import IDENTIFIER, Unconvertible, arg_keyword
from nnxlint.conversion.naming import nnx_list_name
from nnxlint.conversion.shapes import Shape, is_open

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter

# the loop variable written for ``for _ in range(n)``, which the element index needs
_INDEX = "index"


@dataclass
class StackLoop:
    """A ``for <index> in range(<count>)`` loop that may build a stack."""

    index: str
    count: cst.BaseExpression
    depth: int  # the rewriter's depth inside the loop's body
    shapes_before: dict[str, Shape]
    lists: set[str] = field(default_factory=set)  # the nnx.List attributes the body fills


def stack_loop(rewriter: CallRewriter, node: cst.For) -> StackLoop | None:
    """The loop's stack context, or None when it is no ``for <name> in range(<n>)``."""
    call = node.iter
    if node.orelse is not None or node.asynchronous is not None or not isinstance(node.target, cst.Name) \
            or not isinstance(call, cst.Call) or len(call.args) != 1 or call.args[0].keyword is not None \
            or call.args[0].star or not _is_builtin(rewriter, call.func, "range"):
        return None
    index = node.target.value
    if index == "_" and (rewriter.converter._assignments.get(_INDEX) or _reads(node.body, "_")):
        return None
    return StackLoop(_INDEX if index == "_" else index, call.args[0].value, rewriter.depth,
                     dict(rewriter.shapes))


def _is_builtin(rewriter: CallRewriter, func: cst.BaseExpression, name: str) -> bool:
    return isinstance(func, cst.Name) and func.value == name and rewriter.converter.env.scope.lookup(name) is None


def _reads(node: cst.CSTNode, name: str) -> bool:
    found = []

    class Reads(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            found.append(node.value == name)

    node.visit(Reads())
    return any(found)


def loop_header(loop: StackLoop, node: cst.For) -> cst.For:
    """The loop as NNX needs it: ``for _`` names its index."""
    if loop.lists and isinstance(node.target, cst.Name) and node.target.value != loop.index:
        return node.with_changes(target=cst.Name(loop.index))
    return node


def check_sizes_kept(loop: StackLoop, shapes: dict[str, Shape]) -> None:
    """Every iteration must build its elements alike: the loop keeps the input sizes."""
    if not loop.lists:
        return
    for name, shape in loop.shapes_before.items():
        if not same_sizes(shape, shapes.get(name)):
            raise Unconvertible(f"the modules a loop creates get inputs of other sizes in later iterations "
                                f"(`{name}` changes shape): they cannot be built alike in an `nnx.List`")


def same_sizes(before: Shape, after: Shape) -> bool:
    """The same feature size (what the elements are built from), and no known axis changed."""
    if before == after:
        return True
    if not before or not after or before[-1] != after[-1]:
        return False
    if is_open(before) or is_open(after):
        return True
    return len(before) == len(after) and all(a is None or b is None or a == b for a, b in zip(before, after))


def _numbered_name(name: cst.BaseExpression, index: str) -> str:
    """``f'block_{i}'`` -> ``block``: Linen's ``block_2`` is the list entry ``block/2``."""
    parts = name.parts if isinstance(name, cst.FormattedString) else ()
    if len(parts) == 2 and isinstance(parts[0], cst.FormattedStringText) and parts[0].value.endswith("_") \
            and IDENTIFIER.fullmatch(parts[0].value[:-1]) and isinstance(parts[1], cst.FormattedStringExpression) \
            and isinstance(parts[1].expression, cst.Name) and parts[1].expression.value == index \
            and parts[1].format_spec is None and parts[1].conversion is None:
        return parts[0].value[:-1]
    raise Unconvertible(f"a module created in a loop is named other than `name=f'<name>_{{{index}}}'`")


def stacked_call(rewriter: CallRewriter, loop: StackLoop, construction: cst.Call, original: cst.Call,
                 updated: cst.Call) -> cst.BaseExpression:
    """``Block(...)(x)`` inside the loop -> ``self.blocks[i](x)``; ``__init__`` builds the list."""
    converter = rewriter.converter
    layer = converter.layer(construction.func)
    assert layer is not None
    if layer.factory is not None:
        raise Unconvertible(f"`nn.{layer.factory.name}` created in a loop is not converted")
    type_name = layer.mapping.linen if layer.mapping else layer.user_class
    assert type_name is not None
    name = next((arg.value for arg in construction.args if arg_keyword(arg) == "name"), None)
    if name is not None:
        attribute = _numbered_name(name, loop.index)  # the construction's ``name=`` is not passed to NNX
    else:
        if nnx_list_name(type_name) in loop.lists or converter.auto_counters.get(type_name):
            raise Unconvertible(f"`{type_name}` is created more than once per loop iteration or also outside the "
                                "loop: Linen's numbering would interleave the list's elements")
        converter.auto_counters[type_name] = 1  # no other ``type_name`` may follow: its Linen number is unknown
        rewriter.stacked_classes.add(type_name)
        attribute = nnx_list_name(type_name)
    loop.lists.add(attribute)
    if attribute in converter.field_names or attribute in converter.params or attribute in converter.variables:
        raise Unconvertible(f"the list name `{attribute}` collides with a field")
    slot = converter._add_slot(attribute, construction)
    call = rewriter._call_slot(slot, original, updated)
    element, count = slot.init_code.partition(" = ")[2], converter.init_code(loop.count, rewriter.shapes)
    slot.init_code = (f"self.{attribute} = {converter.env.nnx}.List([{element} "
                      f"for {loop.index} in range({count})])")
    return call.with_changes(func=cst.parse_expression(f"self.{attribute}[{loop.index}]"))

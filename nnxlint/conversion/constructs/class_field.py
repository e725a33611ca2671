"""A field holding one of the file's module classes, built in a loop::

    class ResNet(nn.Module):
        block_cls: ModuleDef
        ...
            for j in range(block_size):
                x = self.block_cls(filters, strides=strides, conv=conv, norm=norm)(x)

    ResNet18 = partial(ResNet, stage_sizes=[2, 2, 2, 2], block_cls=ResNetBlock)
    ResNet50 = partial(ResNet, stage_sizes=[3, 4, 6, 3], block_cls=BottleneckResNetBlock)

The classes the field may hold are the ones the file gives it (module-level
partials, constructions, the default).  Each is converted for the same call;
their NNX constructions must be the same up to the class, which the NNX
module reads from its parameter (``block_cls(x_features, filters, ...,
rngs=rngs)``).  Where their outputs differ (``filters`` against ``4 * filters``),
the size that the next module reads is looked up by class:
``{ResNetBlock: filters, BottleneckResNetBlock: filters * 4}[block_cls]`` (a
class from outside the file raises a KeyError there, where NNX could not
know its size).  Linen names the modules by their class (``ResNetBlock_3``);
the list is named after the field (``blocks`` for ``block_cls``), and
``nnxlint.transplant`` finds ``ResNetBlock_3`` as the fourth element of the list
holding ``ResNetBlock`` modules.  Converted in a stack loop only (elsewhere the
attribute's name would depend on the class).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Mode, Unconvertible, arg_keyword, self_attribute
from nnxlint.conversion.naming import snake_case
from nnxlint.conversion.shapes import Shape, Size

if TYPE_CHECKING:
    from nnxlint.conversion.base import Slot
    from nnxlint.conversion.classes import ClassConverter

_PARTIAL = "functools.partial"
_SUFFIXES = re.compile(r"_(cls|class|def|type|module)$")


def class_choices(converter: "ClassConverter", func: cst.BaseExpression) -> tuple[str, ...]:
    """The file's module classes a field called as ``self.<field>(...)`` may hold (empty:
    not such a field, or one given something else)."""
    field = self_attribute(func)
    if field is None or field not in converter.field_names or f"self.{field}" in converter.layer_factories:
        return ()
    env, owner = converter.env, converter.node.name.value
    values: list[cst.BaseExpression] = []
    for node in walk(env.module):
        if not isinstance(node, cst.Call):
            continue
        if env.resolve(node.func) == _PARTIAL and node.args and isinstance(node.args[0].value, cst.Name) \
                and node.args[0].value.value == owner:
            args = node.args[1:]
        elif isinstance(node.func, cst.Name) and node.func.value == owner:
            args = node.args
        else:
            continue
        values += [arg.value for arg in args if arg_keyword(arg) == field]
    default = next((statement.body[0].value for statement in converter.node.body.body  # type: ignore[union-attr]
                    if converter._is_field(statement) and statement.body[0].target.value == field), None)
    if default is not None:
        values.append(default)
    choices: list[str] = []
    for value in values:
        if not (isinstance(value, cst.Name) and value.value in env.linen_classes):
            return ()
        if value.value not in choices:
            choices.append(value.value)
    return tuple(choices)


def list_name(field: str) -> str:
    """``block_cls`` -> ``blocks``: the ``nnx.List`` of the modules a class field builds."""
    return snake_case(_SUFFIXES.sub("", field)) + "s"


def choice_init(converter: "ClassConverter", slot: "Slot", choices: tuple[str, ...], inputs: list[Shape],
                shapes: dict[str, Shape]) -> tuple[str, Shape, Optional[Mode]]:
    """The NNX construction through the field for every class it may hold, and the output."""
    field = self_attribute(slot.construction.func)
    built = [(name, *converter._child_init(slot, name, inputs, shapes)) for name in choices]
    codes = {code.replace(f"{name}(", f"{field}(", 1) for name, code, _, _ in built}
    modes = {mode for _, _, _, mode in built}
    if len(codes) != 1 or len(modes) != 1:
        raise Unconvertible(f"the classes `self.{field}` may hold ({', '.join(choices)}) take different arguments "
                            "or train/eval flags")
    outputs = [output for _, _, output, _ in built]
    return codes.pop(), _output_by_class(field, choices, outputs), modes.pop()  # type: ignore[arg-type]


def _output_by_class(field: str, choices: tuple[str, ...], outputs: list[Shape]) -> Shape:
    if all(output == outputs[0] for output in outputs):
        return outputs[0]
    if any(not output or not isinstance(output, tuple) or len(output) != len(outputs[0]) for output in outputs) \
            or any(output[:-1] != outputs[0][:-1] for output in outputs) \
            or any(output[-1] is None for output in outputs):  # type: ignore[index]
        return None
    lookup = ", ".join(f"{name}: {output[-1].code}" for name, output in zip(choices, outputs))  # type: ignore
    return outputs[0][:-1] + (Size(f"{{{lookup}}}[{field}]"),)  # type: ignore[index]

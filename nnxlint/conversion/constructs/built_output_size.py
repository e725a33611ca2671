"""An output size that only the class's ``__init__`` works out, stored for the classes that build it.

A stage of BiT's bottleneck units whose width may be left to the input
(``nmid = self.nmid or x.shape[-1] // 4``) changes the feature size in every
iteration of its loop; ``__init__`` follows it with a running size
(``constructs/loop_stack.py``), but no expression of the stage's parameters gives
the size after the loop.  The converted class keeps that size as NNX layers keep
theirs::

    x_features = (nmid or in_features // 4) * 4
    for i in range(1, block_size):
        setattr(self, f"unit{i + 1}", Unit(x_features, nmid, rngs=rngs))
        x_features = (nmid or x_features // 4) * 4
    self.out_features = x_features

and a class that builds it reads the size from the module it has just built
(``self.block1.out_features``; in its own loop, the element built last:
``getattr(self, f"block{i + 1}").out_features``, ``self.stages[-1].out_features``).
Only for the feature axis, from a running size that ``__init__`` sets whatever
branch it takes, in a class with no field or attribute named ``out_features``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import names_read
from nnxlint.conversion.shapes import ANY_AXES, Several, Shape, Size

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter

ATTRIBUTE = "out_features"
# stands for the built module in a child's output size; the parent puts the module's code in its place
BUILT = "__built_module__"


def stored_output_size(converter: "ClassConverter") -> Optional[str]:
    """The ``__init__`` code of the output's feature size when only an ``__init__`` local holds it
    (then ``__init__`` ends with ``self.out_features = <it>``), or None.  Of a tuple returned
    (``return x, features``), the one array whose size that is."""
    sizes = [shape[-1].code for shape in _arrays(converter._output_shape)
             if shape and shape[-1] is not None and shape[-1] != ANY_AXES]
    unknown = {name for name, value in converter.final_sizes.items() if value is None}
    stored = [code for code in sizes if names_read(cst.parse_expression(code)) & unknown]
    if len(stored) != 1 or names_read(cst.parse_expression(stored[0])) & converter.guarded_locals:
        return None
    taken = converter.field_names | set(converter.slots) | set(converter.params) | set(converter.variables)
    return None if ATTRIBUTE in taken else stored[0]


def with_stored_size(output: Shape, stored: Optional[str], original: Shape) -> Shape:
    """The output shape the classes building this one see: the stored size read from the module
    (``original``: the shape in the class's own ``__init__`` terms, where the size is the local)."""
    if stored is None:
        return output
    if isinstance(output, Several) and isinstance(original, Several):
        return Several(tuple(with_stored_size(part, stored, before)
                             for part, before in zip(output.parts, original.parts)))
    if isinstance(output, tuple) and isinstance(original, tuple) and original and original[-1] is not None \
            and original[-1] != ANY_AXES and original[-1].code == stored:
        return output[:-1] + (Size(f"{BUILT}.{ATTRIBUTE}"),)
    return output


def _arrays(shape: Shape) -> list[tuple]:
    """The shapes of the arrays a method returns: one, or each of a tuple."""
    if isinstance(shape, Several):
        return [part for part in shape.parts if isinstance(part, tuple)]
    return [shape] if isinstance(shape, tuple) else []


def built_element(code: str, attribute: str, element: str) -> str:
    """A parent's loop reads the stored size of the element it has just built: ``self.stages`` /
    ``self.block_`` (the slot standing for the list or the attributes set per iteration) ->
    ``element`` (``self.stages[-1]``, ``getattr(self, f"block{i + 1}")``)."""
    return code.replace(f"self.{attribute}.{ATTRIBUTE}", f"{element}.{ATTRIBUTE}")

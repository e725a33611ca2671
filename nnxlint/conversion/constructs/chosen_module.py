"""A layer given by a field or else made here, as flax's Transformer examples share
their embedding::

    if self.shared_embedding is None:
        embed = nn.Embed(config.vocab_size, config.emb_dim)
    else:
        embed = self.shared_embedding
    y = embed(tokens)
    ...
    logits = embed.attend(y)

Linen makes ``Embed_0`` here only when the field is ``None``; otherwise the name
calls the module it was given (whose variables live where it was made).  NNX
does the same in ``__init__``: ``if shared_embedding is None: self.embed_0 =
nnx.Embed(...)`` ``else: self.embed_0 = shared_embedding`` (an NNX module may be
held in two places), and every use reads the attribute, as for a layer bound to
a name (``constructs/local_module.py``).  Converted when the ``if`` has exactly
these two assignments, the layer is a Flax layer and no other layer of its type
gets an automatic name in the class (a branch not taken would shift Linen's
numbering).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, arg_keyword, self_attribute

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


def bind_chosen_module(rewriter: CallRewriter, node: cst.If) -> bool:
    """``if self.f is None: m = nn.Layer(...) else: m = self.f``: ``m`` becomes an attribute
    built or taken from ``f`` in ``__init__``; the statement goes.  True when it was one."""
    converter = rewriter.converter
    field, made_first = _field_test(converter, node.test)
    if field is None or not isinstance(node.orelse, cst.Else) or rewriter.depth or not converter._compact:
        return False
    made, given = (node.body, node.orelse.body) if made_first else (node.orelse.body, node.body)
    construction, name = _single_assignment(made), _single_assignment(given)
    if construction is None or name is None or construction[0] != name[0] \
            or self_attribute(name[1]) != field or not isinstance(construction[1], cst.Call):
        return False
    layer = converter.layer(construction[1].func)
    if layer is None or layer.mapping is None:
        return False
    target = construction[0]
    if converter._assignments.get(target) != 2:
        raise Unconvertible(f"`{target}` (a layer or the field `{field}`) is assigned again")
    if not any(arg_keyword(arg) == "name" for arg in construction[1].args) \
            and _auto_named(converter, layer.mapping.linen) > 1:
        raise Unconvertible(f"`{target}` is an `nn.{layer.mapping.linen}` made in a branch while another one is "
                            "named automatically: Linen's numbering depends on the branch taken")
    slot = converter.construct(construction[1], None)
    converter.slot_guards[slot.attribute] = f"{field} is None"
    converter.slot_alternatives[slot.attribute] = f"self.{slot.attribute} = {field}"
    rewriter.local_modules[target] = slot
    rewriter.removed_statements.add(id(node))
    return True


def _field_test(converter, test: cst.BaseExpression) -> tuple[Optional[str], bool]:
    """(field, True) for ``self.f is None``, (field, False) for ``self.f is not None``."""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].comparator, cst.Name)
            and test.comparisons[0].comparator.value == "None"):
        return None, False
    field = self_attribute(test.left)
    operator = test.comparisons[0].operator
    if field not in converter.field_names or not isinstance(operator, (cst.Is, cst.IsNot)):
        return None, False
    return field, isinstance(operator, cst.Is)


def _single_assignment(block: cst.BaseSuite) -> Optional[tuple[str, cst.BaseExpression]]:
    """(name, value) of a block that is exactly ``name = value``."""
    statements = block.body if isinstance(block, cst.IndentedBlock) else ()
    if len(statements) != 1 or not isinstance(statements[0], cst.SimpleStatementLine) \
            or len(statements[0].body) != 1:
        return None
    assign = statements[0].body[0]
    if not (isinstance(assign, cst.Assign) and len(assign.targets) == 1
            and isinstance(assign.targets[0].target, cst.Name)):
        return None
    return assign.targets[0].target.value, assign.value


def _auto_named(converter, linen_type: str) -> int:
    """How many ``nn.<linen_type>(...)`` without ``name=`` the class creates."""
    def linen_type_of(call: cst.Call) -> Optional[str]:
        try:
            layer = converter.layer(call.func)
        except Unconvertible:
            return None
        return layer.mapping.linen if layer is not None and layer.mapping is not None else None

    return sum(1 for node in walk(converter.node)
               if isinstance(node, cst.Call) and not any(arg_keyword(arg) == "name" for arg in node.args)
               and linen_type_of(node) == linen_type)

"""``setup`` code besides ``self.x = ...``, as flax's wmt ``Transformer`` writes it::

    def setup(self):
        config = self.config
        if config.share_embeddings:
            if config.output_vocab_size is not None:
                assert config.output_vocab_size == config.vocab_size, "..."
            self.shared_embedding = nn.Embed(config.vocab_size, config.emb_dim)
        else:
            self.shared_embedding = None
        self.encoder = Encoder(config=config, shared_embedding=self.shared_embedding)

``setup`` runs once, like NNX's ``__init__``, so each statement keeps its
meaning there: a local alias of fields (``config = self.config``) is read as
the fields it names; plain values, other locals and ``if``s that set only those
stay ``__init__`` code (``constructs/setup_values.py``); an ``if`` on fields builds its submodules under the same
test (``if config.share_embeddings: self.shared_embedding = nnx.Embed(...)``),
with the ``else`` that sets the same attribute to a plain value
(``else: self.shared_embedding = None``); an ``assert`` on fields stays, under
its branch's test; and a submodule made earlier may be passed to a later one
(``shared_embedding=self.shared_embedding``, one NNX module held in two places);
a ``print`` of values (``constructs/setup_display.py``) prints them at the end
of ``__init__``.  Anything else in ``setup`` gets no fix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible, self_attribute
from nnxlint.conversion.constructs.branch_module import guarded, negated
from nnxlint.conversion.constructs.setup_display import is_display, read_display
from nnxlint.conversion.constructs.setup_values import add_local, add_plain_if, sets_plain_values

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter


def read_setup_block(converter: ClassConverter, statements, guard: Optional[str] = None,
                     else_of: Optional[str] = None) -> None:
    """``setup``'s statements, read under ``guard`` (the ``else`` of the branch taken under ``else_of``)."""
    for statement in statements:
        if isinstance(statement, cst.If) and sets_plain_values(converter, statement):
            add_plain_if(converter, statement, guard)  # ``constructs/setup_values.py``
        elif isinstance(statement, cst.If):
            _read_branch(converter, statement, guard)
        elif guard is None and is_display(converter, statement):
            read_display(converter, statement)  # type: ignore[arg-type]
        elif isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
                and isinstance(statement.body[0], cst.Assert):
            check = statement.body[0]
            message = f", {converter.init_code(check.msg, {})}" if check.msg is not None else ""
            converter.init_lines.append(guarded(f"assert {converter.init_code(check.test, {})}{message}", guard,
                                                converter.env.module.default_indent))
        elif isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
                and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1:
            assign = statement.body[0]
            target = assign.targets[0].target
            attribute = self_attribute(target)
            if isinstance(target, cst.Name) and guard is None and self_attribute(assign.value) is not None:
                _alias(converter, target.value, assign.value)
            elif isinstance(target, cst.Name):
                add_local(converter, target.value, assign.value, guard)
            elif attribute is None or not _otherwise_value(converter, attribute, assign.value, else_of):
                converter.read_setup_assignment(target, assign.value, guard)
        else:
            raise Unconvertible("`setup` has statements other than `self.x = ...` assignments, aliases of fields, "
                                "`if`s on fields, `assert`s and `print`s")


def _alias(converter: ClassConverter, name: str, value: cst.BaseExpression) -> None:
    """``config = self.config``: ``config`` reads the field wherever ``__init__`` needs it."""
    if name in converter.aliases:
        raise Unconvertible(f"`{name}` is bound twice in `setup`")
    converter.aliases[name] = converter.init_code(value, {})


def _read_branch(converter: ClassConverter, node: cst.If, guard: Optional[str]) -> None:
    test = converter.fixed_condition(node.test)
    if test is None:
        raise Unconvertible("an `if` in `setup` whose test reads other than fields is not converted")
    taken = test if guard is None else f"{guard} and ({test})"
    read_setup_block(converter, node.body.body, taken)  # type: ignore[union-attr]
    if node.orelse is None:
        return
    other = negated(test) if guard is None else f"{guard} and {negated(test)}"
    if isinstance(node.orelse, cst.If):
        _read_branch(converter, node.orelse, other)
    else:
        read_setup_block(converter, node.orelse.body.body, other, else_of=taken)  # type: ignore[union-attr]


def _otherwise_value(converter: ClassConverter, attribute: str, value: cst.BaseExpression,
                     else_of: Optional[str]) -> bool:
    """``else: self.x = None`` for a submodule ``self.x`` made in the branch before (under
    ``else_of``): the attribute's ``else`` line; True when it was one."""
    if else_of is None or attribute not in converter.slots or converter.slot_guards.get(attribute) != else_of \
            or attribute in converter.slot_alternatives:
        return False
    converter.slot_alternatives[attribute] = f"self.{attribute} = {converter.init_code(value, {})}"
    return True


def check_submodule_order(converter: ClassConverter) -> None:
    """A submodule passed to another (``Encoder(shared_embedding=self.shared_embedding)``)
    must be built before it in ``__init__``."""
    for index, attribute in enumerate(converter.slot_order):
        code = converter.slots[attribute].init_code or ""
        for used in re.findall(r"\bself\.([A-Za-z_][A-Za-z0-9_]*)", code.partition(" = ")[2]):
            if used in converter.slots and used != attribute and converter.slot_order.index(used) >= index:
                raise Unconvertible(f"`self.{attribute}` is built from `self.{used}`, made after it")

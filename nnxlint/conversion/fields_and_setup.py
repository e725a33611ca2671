"""Reading a Linen class's body: its docstring, its dataclass fields (``__init__``
parameters, their defaults kept; a ``ClassVar`` stays a class attribute) and its
``setup()``, whose ``self.x = ...`` lines become submodules, parameters, variables
or plain values of ``__init__`` (``constructs/setup_code.py``).  A mixin of
``classes.ClassConverter``, whose state it reads.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.conversion.base import InitParam, Unconvertible, function_params, self_attribute
from nnxlint.conversion.constructs import SELF_CALLS
from nnxlint.conversion.constructs.dataclass_field import field_parameter, is_field_call
from nnxlint.conversion.constructs.layer_factory import field_default_factory
from nnxlint.conversion.constructs.setup_code import read_setup_block
from nnxlint.conversion.constructs.setup_values import add_value


class FieldsAndSetup:
    """``ClassConverter``'s reading of fields and ``setup``."""

    # -- fields and setup --------------------------------------------------
    @staticmethod
    def _is_field(statement: cst.CSTNode) -> bool:
        return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.AnnAssign)
                and isinstance(statement.body[0].target, cst.Name))

    def _add_field(self, statement: cst.SimpleStatementLine) -> None:
        assign = statement.body[0]
        assert isinstance(assign, cst.AnnAssign) and isinstance(assign.target, cst.Name)
        annotation = self.env.code(assign.annotation.annotation)
        if assign.target.value in self.field_names or assign.target.value == "rngs":  # else a duplicate parameter
            raise Unconvertible(f"field `{assign.target.value}` is declared twice or named `rngs`")
        if "ClassVar" in annotation:  # no dataclass field: a class attribute, kept as it is
            self.class_attributes[assign.target.value] = id(statement)
            return
        if "InitVar" in annotation:
            raise Unconvertible(f"field `{assign.target.value}: {annotation}` is not converted")
        default = None
        if assign.value is not None:
            if is_field_call(self, assign.value):
                self.fields.append(field_parameter(self, assign.target.value, annotation, assign.value))
                self.field_names.add(assign.target.value)
                return
            default = field_default_factory(self, assign.target.value, assign.value) \
                or self.init_code(assign.value, {})
        self.fields.append(InitParam(assign.target.value, annotation, default))
        self.field_names.add(assign.target.value)

    def _read_setup(self, setup: cst.FunctionDef) -> None:
        if len(function_params(setup)) != 1:
            raise Unconvertible("`setup` takes arguments")
        read_setup_block(self, setup.body.body)  # ``constructs/setup_code.py``: aliases, ifs, asserts

    def read_setup_assignment(self, target: cst.BaseExpression, value: cst.BaseExpression,
                              guard: Optional[str]) -> None:
        """``self.x = ...`` in ``setup`` (under ``guard``, a test on fields, when in a branch)."""
        attribute = self_attribute(target)
        if attribute is None:
            raise Unconvertible("`setup` assigns something other than `self.x`")
        if isinstance(value, cst.Call) and self.layer(value.func) is not None:
            self._add_slot(attribute, value)
            if guard is not None:
                self.slot_guards[attribute] = guard
        elif guard is not None:
            raise Unconvertible(f"`self.{attribute}` set in a branch of `setup` to other than a submodule")
        elif isinstance(value, cst.Call) and self_attribute(value.func) in SELF_CALLS:
            SELF_CALLS[self_attribute(value.func)].in_setup(self, attribute, value)
        else:
            add_value(self, attribute, value)  # ``constructs/setup_values.py``

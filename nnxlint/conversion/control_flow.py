"""Loops and branches in a Linen ``__call__``: the stacks of the enclosing ``for``
loops and ``if`` tests (in ``__init__`` terms) that tell where a submodule made
inside is built (a layer stack, ``constructs/loop_stack.py``; under a test on
fields, ``constructs/branch_module.py``), the shapes each arm leaves
(``constructs/branch_sizes.py``), and ``if not self.is_initializing():`` unwrapped.
A mixin of ``calls.CallRewriter``, whose state it reads.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.constructs import branch_names
from nnxlint.conversion.constructs.dict_entries import forget_in_loop
from nnxlint.conversion.constructs.branch_module import negated, returns
from nnxlint.conversion.constructs.branch_sizes import enter_branch, leave_branch, leave_branch_body
from nnxlint.conversion.constructs.chosen_module import bind_chosen_module
from nnxlint.conversion.constructs.graph_loop import begin_graph_loop, end_graph_loop
from nnxlint.conversion.constructs.has_variable import is_initialized_guard
from nnxlint.conversion.constructs.loop_stack import close_loop, loop_header, stack_loop
from nnxlint.conversion.constructs.rank_test import decided_rank_test
from nnxlint.conversion.constructs.shape_branch import shape_test_condition
from nnxlint.conversion.constructs.value_dtype import forget


class ControlFlow:
    """``CallRewriter``'s ``while``/``for``/``if`` (and ``lambda``) visitors."""

    # control flow: constructions inside are not converted, but for a layer stack (``constructs/loop_stack.py``)
    def visit_While(self, node) -> None:
        forget_in_loop(self, node)
        self.depth += 1

    def leave_While(self, original_node, updated_node):
        self.depth -= 1
        return updated_node

    visit_Lambda, leave_Lambda = visit_While, leave_While

    def visit_For(self, node: cst.For) -> None:
        forget(self.shapes, node.target)
        forget_in_loop(self, node)
        self.loop_conditions.append(len(self.conditions))
        graph_loop = begin_graph_loop(self, node)
        self.depth += 1
        self.loops.append(stack_loop(self, node) if self.converter._compact and not graph_loop else None)

    def leave_For(self, original_node, updated_node):
        self.depth -= 1
        self.loop_conditions.pop()
        loop = self.loops.pop()
        if loop is None:
            return end_graph_loop(self, original_node, updated_node)
        close_loop(self, loop)
        return loop_header(loop, updated_node)

    def visit_If(self, node: cst.If) -> Optional[bool]:
        if bind_chosen_module(self, node):
            return False
        self.depth += 1
        init_guard = self._is_init_guard(node)  # (before this ``if``'s own test joins the conditions)
        self.init_guards += init_guard
        if id(node) in self.elifs:  # ``elif``: the branch before it was not taken
            self.conditions[-1] = negated(self.conditions[-1])
        if isinstance(node.orelse, cst.If):
            self.elifs.add(id(node.orelse))
        fixed = self.converter.fixed_condition(node.test, self.shapes)
        self.conditions.append(fixed or shape_test_condition(self, node))
        keeps_branch = init_guard or (fixed is None and self.conditions[-1] is not None)
        enter_branch(self, node, fixed, keeps_branch, decided_rank_test(self, node.test))
        branch_names.enter(self, node)

    def leave_If_body(self, original_node: cst.If) -> None:
        leave_branch_body(self, original_node)
        branch_names.leave_body(self, original_node)

    def visit_Else(self, node: cst.Else) -> None:
        self.conditions[-1] = negated(self.conditions[-1])

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        """``if not self.is_initializing(): body`` -> ``body``: NNX's ``__init__``
        never runs ``__call__``, so every call is past initialization."""
        if id(original_node) in self.removed_statements:
            return cst.RemoveFromParent()  # a layer or a field's (``constructs/chosen_module.py``)
        self.depth -= 1
        leave_branch(self, original_node)
        branch_names.leave(self, original_node)
        condition = self.conditions.pop()
        if not self._is_init_guard(original_node):
            if returns(original_node) and self.converter._compact:  # the rest runs under ``not (test)``
                if self.depth:
                    raise Unconvertible("a `return` inside nested branches of a compact method is not converted")
                self.depth += 1  # until the method ends: what follows is made under that test
                self.conditions.append(negated(condition))
            return updated_node
        self.init_guards -= 1
        body = list(updated_node.body.body)  # type: ignore[union-attr]
        header_comment = updated_node.body.header.comment  # type: ignore[union-attr]
        kept_comment = [cst.EmptyLine(comment=header_comment)] if header_comment else []
        body[0] = body[0].with_changes(
            leading_lines=[*updated_node.leading_lines, *kept_comment, *body[0].leading_lines])
        return cst.FlattenSentinel(body)

    def _is_init_guard(self, node: cst.If) -> bool:
        test = node.test
        return (node.orelse is None and isinstance(node.body, cst.IndentedBlock)
                and isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not)
                and isinstance(test.expression, cst.Call) and not test.expression.args
                and self.converter.is_self_call(test.expression.func, "is_initializing")) \
            or is_initialized_guard(self, node)

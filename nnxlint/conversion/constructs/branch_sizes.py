"""Sizes that depend on the branch taken::

    if self.use_proj:
        x = nn.Dense(self.width, name='proj')(x)
    return nn.Dense(self.classes)(x)

Linen sizes the last layer from whichever ``x`` reaches it.  A test on fields is
known in ``__init__`` too, so the size is the conditional expression itself:
``nnx.Linear(width if use_proj else in_features, classes, rngs=rngs)``.  After an
``if``, each name's shape is merged from its shape at the end of the branch and
at the end of the other one (the ``else``, or the shape before the ``if``): kept
where they agree, ``a if test else b`` on each axis where they differ, in
``__init__`` terms.  Where the test reads a value of ``__call__`` (an array, its
shape, a call argument), ``__init__`` cannot decide, and the axes that differ are
unknown (a layer reading one is refused, ``unknown_sizes`` saying which test).

A branch that ends in ``return`` or ``raise`` leaves the other branch's shapes;
``if not self.is_initializing():`` (always run in NNX) and ``if a.shape !=
b.shape:`` (``shape_branch.py``: not taken only when the shapes already agree)
leave the branch's.  Several ``return``s give the output merged by the tests
under which each is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import Unconvertible, line_of
from nnxlint.conversion.constructs.branch_module import ends, returns
from nnxlint.conversion.shapes import Several, Shape, Size, tidy_code

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


@dataclass
class BranchShapes:
    """The shapes of one ``if`` statement while the rewriter is inside it."""

    before: dict[str, Shape]
    test: Optional[str]  # in ``__init__`` terms; None: a value of ``__call__``
    shown: str  # the test as written, for a refusal
    keeps_branch: bool  # an init guard or a shape test: the branch's shapes hold after it
    decided: Optional[bool] = None  # a test of a known rank (``rank_test.py``): whether the branch is taken
    taken: Optional[dict[str, Shape]] = None


def enter_branch(rewriter: "CallRewriter", node: cst.If, test: Optional[str], keeps_branch: bool,
                 decided: Optional[bool] = None) -> None:
    rewriter.branches[id(node)] = BranchShapes(dict(rewriter.shapes), test, rewriter.converter.env.code(node.test),
                                               keeps_branch, decided)


def leave_branch_body(rewriter: "CallRewriter", node: cst.If) -> None:
    """The branch is done: the ``else`` (or what follows) starts from the shapes before it."""
    branch = rewriter.branches.get(id(node))
    if branch is None:
        return
    branch.taken = dict(rewriter.shapes)
    _set(rewriter, branch.before)


def leave_branch(rewriter: "CallRewriter", node: cst.If) -> None:
    """The shapes after the whole ``if``."""
    branch = rewriter.branches.pop(id(node), None)
    if branch is None or branch.taken is None:
        return
    taken, other = branch.taken, dict(rewriter.shapes)
    if branch.decided is False:
        return  # the other branch's shapes are already there
    if branch.keeps_branch or branch.decided or ends(node.orelse.body if isinstance(node.orelse, cst.Else) else None):
        _set(rewriter, taken)
        return
    if returns(node) or ends(node.body):
        return  # the other branch's shapes are already there
    merged = {}
    for name in taken.keys() | other.keys():
        if name not in other or name not in taken:  # bound in one branch only: read after it only from that one
            merged[name] = taken[name] if name in taken else other[name]
            continue
        merged[name] = merged_shape(branch.test, taken[name], other[name])
        if branch.test is None and merged[name] != taken[name]:
            rewriter.unknown_sizes[name] = branch.shown
    _set(rewriter, merged)


def merged_output(rewriter: "CallRewriter", shape: Shape) -> None:
    """A ``return``: the output is the first ``return``'s shape where the tests it runs
    under hold, else the next one's, and so on."""
    rewriter.returns.append((tuple(rewriter.conditions), shape))
    output = rewriter.returns[-1][1]
    for tests, earlier in reversed(rewriter.returns[:-1]):
        if not tests:
            output = earlier  # it always returns: the later ones never run
            continue
        output = merged_shape(None if None in tests else all_of(tests), earlier, output)
    rewriter.output = output


def explain_unknown(rewriter: "CallRewriter", args: list[cst.Arg], error: Unconvertible) -> Unconvertible:
    """A layer refused for an input of unknown size: the reason names the test of ``__call__``
    that decides it, or else the last sum of arrays whose sizes were not known to agree."""
    unknown = [arg for arg in args if not (shape := rewriter.shape_of(arg.value)) or shape[-1] is None]
    for arg in unknown:
        name = arg.value.value if isinstance(arg.value, cst.Name) else None
        if name in rewriter.unknown_sizes:
            return type(error)(f"the size of `{name}` depends on the test `{rewriter.unknown_sizes[name]}`, which "
                               f"reads values of `__call__` (arrays, their shapes) that `__init__` does not have: "
                               f"{error}")
    if unknown and rewriter.unequal_sums and "cannot be determined statically" in str(error):
        node, left, right = rewriter.unequal_sums[-1]
        code = rewriter.converter.env.code
        return type(error)(f"{error} (the last sum of arrays whose sizes the conversion does not know to be equal: "
                           f"`{code(node)}` at line {line_of(rewriter.converter.env.module, node)}, of sizes "
                           f"`{tidy_code(left.code) if left else '?'}` and `{tidy_code(right.code) if right else '?'}`)")
    return error


def all_of(tests: tuple[str, ...]) -> str:
    """``a and (b or c)``: tests on fields, all of them."""
    return " and ".join(_operand(test) if len(tests) > 1 else test for test in tests)


def merged_shape(test: Optional[str], taken: Shape, other: Shape) -> Shape:
    """``taken`` where ``test`` holds, else ``other``; None (unknown) where they differ
    and ``test`` is not known in ``__init__``."""
    if taken == other:
        return taken
    if test is None or taken is None or other is None:
        return None
    if isinstance(taken, Several) or isinstance(other, Several):
        if type(taken) is not type(other) or len(taken.parts) != len(other.parts):  # type: ignore[union-attr]
            return None
        return type(taken)(tuple(merged_shape(test, a, b)  # type: ignore[call-arg,union-attr]
                                 for a, b in zip(taken.parts, other.parts)))  # type: ignore[union-attr]
    if len(taken) != len(other):
        return None
    return tuple(_merged_axis(test, a, b) for a, b in zip(taken, other))


def _merged_axis(test: str, taken: Optional[Size], other: Optional[Size]) -> Optional[Size]:
    if taken == other:
        return taken
    if taken is None or other is None or taken.code == "..." or other.code == "...":
        return None
    if tidy_code(taken.code) == tidy_code(other.code) or _equal_unless(test, taken.code, other.code):
        return taken
    return conditional_size(test, taken, other)


def _equal_unless(test: str, taken: str, other: str) -> bool:
    """Whether ``test`` failing means ``other == taken``: a projection taken only when the
    sizes differ, ``if in_features != nout or strides != (1, 1): x = project(nout)``, leaves
    ``nout`` either way (``test`` is ``a != b``, or an ``or`` of tests with one)."""
    try:
        expression = cst.parse_expression(tidy_code(test))
    except (cst.ParserSyntaxError, RecursionError):
        return False
    operands = [expression]
    while isinstance(operands[-1], cst.BooleanOperation) and isinstance(operands[-1].operator, cst.Or):
        last = operands.pop()
        operands += [last.left, last.right]
    sides = {tidy_code(taken), tidy_code(other)}
    code = cst.Module([]).code_for_node
    for operand in operands:
        if isinstance(operand, cst.Comparison) and len(operand.comparisons) == 1 \
                and isinstance(operand.comparisons[0].operator, cst.NotEqual):
            if {tidy_code(code(operand.left)), tidy_code(code(operand.comparisons[0].comparator))} == sides:
                return True
    return False


def conditional_size(test: str, taken: Size, other: Size) -> Size:
    """``taken if test else other``, parenthesised only where Python needs it."""
    return Size(f"{_operand(taken.code)} if {_operand(test)} else {tidy_code(other.code)}")


def _operand(code: str) -> str:
    """``code`` as the first two parts of a conditional expression (or a term of ``and``)."""
    code = tidy_code(code)
    expression = cst.parse_expression(code)
    weak = (cst.IfExp, cst.Lambda, cst.NamedExpr, cst.BooleanOperation)
    return f"({code})" if isinstance(expression, weak) else code


def _set(rewriter: "CallRewriter", shapes: dict[str, Shape]) -> None:
    """In place: loops keep a reference to the rewriter's dict."""
    rewriter.shapes.clear()
    rewriter.shapes.update(shapes)

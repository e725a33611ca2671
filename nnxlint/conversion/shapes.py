"""Static array shapes for the Linen -> NNX conversion.

NNX layers take the input sizes that Linen infers at ``init``.  The conversion
follows shapes through a module's ``__call__``: each axis is a ``Size`` -- source
text valid inside the generated ``__init__`` (``16``, ``features``,
``in_features``, ``7 * 7 * features``) and its value when it is a known number.
An axis nobody can know statically (the batch) is None.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import libcst as cst

SIMPLE_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|\d+")  # needs no parentheses as an operand


@dataclass(frozen=True)
class Size:
    code: str
    value: Optional[int] = None
    # False only for ``SOME_AXES`` (not compared: it is ``ANY_AXES`` to every rule but one)
    input_leading: bool = field(default=True, compare=False)
    # for an input's ``ANY_AXES``: which ``__call__`` argument's leading axes they are; ``rank_of`` once
    # their sizes may have changed, their number not (a strided convolution) (``constructs/input_axes.py``)
    origin: Optional[int] = field(default=None, compare=False)
    rank_of: Optional[int] = field(default=None, compare=False)

    @staticmethod
    def number(value: int) -> "Size":
        return Size(str(value), value)

    def operand(self) -> str:
        """The code, parenthesised when it is not a single name or number."""
        return self.code if SIMPLE_CODE.fullmatch(self.code) else f"({self.code})"


Axis = Optional[Size]
Shape = Optional[tuple[Axis, ...]]  # None: not known at all

# never need parentheses of their own (an integer does: ``(1).real``)
_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.List, cst.SimpleString)


class _Tidy(cst.CSTTransformer):
    def on_leave(self, original_node, updated_node):
        updated_node = super().on_leave(original_node, updated_node)
        parens = getattr(updated_node, "lpar", None)
        if not parens:
            return updated_node
        if isinstance(updated_node, _ATOMS):
            return updated_node.with_changes(lpar=[], rpar=[])
        if len(parens) > 1:  # ``((a * b))``
            return updated_node.with_changes(lpar=[parens[0]], rpar=[updated_node.rpar[-1]])
        return updated_node

    def leave_IfExp(self, original_node, updated_node):
        """``(a * b) if (c) else (d + e)``: the parts of a conditional need none, but
        another conditional's (kept after ``else`` too, where they only help reading)."""
        def bare(part):
            kept = (cst.IfExp, cst.Lambda, cst.NamedExpr, cst.Tuple, cst.GeneratorExp)
            return part if isinstance(part, kept) else part.with_changes(lpar=[], rpar=[])

        body, test, orelse = bare(updated_node.body), bare(updated_node.test), bare(updated_node.orelse)
        code = cst.Module([]).code_for_node
        # sizes are pure: ``a if t else (b if t else c) + d`` is ``a if t else c + d``, ``a if t else a`` is ``a``
        body, orelse = (bare(part.visit(_Decided(code(test), holds))) for part, holds in ((body, True), (orelse, False)))
        if isinstance(test, cst.Name) and test.value in ("True", "False"):  # a test decided by folding
            return body if test.value == "True" else orelse
        sides = (test.left, test.comparisons[0].comparator) if _is_inequality(test) else ()
        if sides and {code(body), code(orelse)} == {code(bare(side)) for side in sides}:
            return body  # ``a if b != a else b``: equal to ``a`` either way
        if code(body) == code(orelse):
            return body.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar) if updated_node.lpar else body
        return updated_node.with_changes(body=body, test=test, orelse=orelse)

    def leave_Comparison(self, original_node, updated_node):
        """``a != a`` (the same code on both sides) or ``(2, 2) != (1, 1)`` (integer literals):
        ``False`` / ``True``."""
        code = cst.Module([]).code_for_node
        if len(updated_node.comparisons) != 1 or not isinstance(updated_node.comparisons[0].operator, _EQUALITIES):
            return updated_node
        left, right = (code(side.with_changes(lpar=[], rpar=[]))
                       for side in (updated_node.left, updated_node.comparisons[0].comparator))
        literals = _INTEGER_LITERALS.fullmatch(left) and _INTEGER_LITERALS.fullmatch(right)
        if left != right and not literals:
            return updated_node
        equal = left == right or ast.literal_eval(left) == ast.literal_eval(right)
        return cst.Name(str(equal == isinstance(updated_node.comparisons[0].operator, cst.Equal)))

    def leave_BooleanOperation(self, original_node, updated_node):
        """``2 or in_features // 4`` is ``2``, ``None or d`` is ``d``; ``t or False`` is ``t``."""
        left, right = updated_node.left, updated_node.right
        truth = _literal_truth(left)
        either = isinstance(updated_node.operator, cst.Or)
        if truth is not None:
            picked = left if truth == either else right
        elif _literal_truth(right) is (not either) and isinstance(right, cst.Name):  # ``t or False``, ``t and True``
            picked = left
        else:
            return updated_node
        return picked.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar) if updated_node.lpar else picked

    def leave_BinaryOperation(self, original_node, updated_node):
        """``(2) * 4`` (a folded part in integer arithmetic) is ``8``."""
        value = fold_integers(cst.Module([]).code_for_node(updated_node.with_changes(lpar=[], rpar=[])))
        return updated_node if value is None or value < 0 else cst.Integer(str(value))

    def leave_Call(self, original_node, updated_node):
        """``max(a, a)`` is ``a``."""
        code = cst.Module([]).code_for_node
        arguments = {code(arg.value.with_changes(lpar=[], rpar=[])) for arg in updated_node.args}
        if code(updated_node.func) == "max" and len(updated_node.args) == 2 and len(arguments) == 1 \
                and not any(arg.keyword or arg.star for arg in updated_node.args):
            return updated_node.args[0].value.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar)
        return updated_node


_EQUALITIES = (cst.Equal, cst.NotEqual)
_INTEGER_LITERALS = re.compile(r"\(?\d{1,18}(, ?\d{1,18})*,?\)?")  # ``12``, ``(2, 2)``


def _is_inequality(test: cst.BaseExpression) -> bool:
    return isinstance(test, cst.Comparison) and len(test.comparisons) == 1 \
        and isinstance(test.comparisons[0].operator, cst.NotEqual)


def _literal_truth(node: cst.BaseExpression):
    """Whether a literal (``None``, ``True``, ``False``, an integer) is true; None for anything else."""
    if isinstance(node, cst.Name) and node.value in ("None", "True", "False"):
        return node.value == "True"
    if isinstance(node, cst.Integer):
        return node.evaluated_value != 0
    return None


class _Decided(cst.CSTTransformer):
    """Inside a branch of the test ``test``: each ``a if test else b`` is the part it picks."""

    def __init__(self, test: str, holds: bool) -> None:
        super().__init__()
        self.test, self.holds = test, holds

    def leave_IfExp(self, original_node, updated_node):
        if cst.Module([]).code_for_node(updated_node.test.with_changes(lpar=[], rpar=[])) != self.test:
            return updated_node
        chosen = updated_node.body if self.holds else updated_node.orelse
        return chosen.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar) if updated_node.lpar else chosen


class _LikeTerms(cst.CSTTransformer):
    """``width + 2 * width + g`` -> ``3 * width + g``: each sum's terms grouped by what
    they multiply, in the order they first appear."""

    def leave_BinaryOperation(self, original_node, updated_node):
        if not isinstance(updated_node.operator, cst.Add) or updated_node.lpar:
            return updated_node
        code = cst.Module([]).code_for_node
        counts: dict[str, int] = {}
        for term in _terms(updated_node):
            factor, rest = _factor(term)
            counts[code(rest)] = counts.get(code(rest), 0) + factor
        if len(counts) == len(list(_terms(updated_node))):
            return updated_node
        terms = [rest if count == 1 else f"{count} * {rest}" for rest, count in counts.items() if count]
        return cst.parse_expression(" + ".join(terms) or "0")


def _terms(node: cst.BaseExpression):
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add) and not node.lpar:
        yield from _terms(node.left)
        yield from _terms(node.right)
    else:
        yield node


def _factor(term: cst.BaseExpression) -> tuple[int, cst.BaseExpression]:
    """``2 * width`` -> (2, ``width``)."""
    if isinstance(term, cst.BinaryOperation) and isinstance(term.operator, cst.Multiply) \
            and isinstance(term.left, cst.Integer) and not term.lpar:
        return int(term.left.value), term.right
    return 1, term


def collect_terms(code: str) -> str:
    """``code`` with like terms of its sums added up (``tidy_code`` first)."""
    try:
        return tidy_code(cst.Module([]).code_for_node(cst.parse_expression(tidy_code(code)).visit(_LikeTerms())))
    except (cst.ParserSyntaxError, RecursionError):
        return code


def tidy_code(code: str) -> str:
    """A size's code without the parentheses Python does not need: doubled ones, those
    around a name, call, subscript or list, and those around the whole of it (not a
    tuple's): ``(([d] * n))[-1]`` -> ``([d] * n)[-1]``."""
    try:
        expression = cst.parse_expression(code).visit(_Tidy())
        expression = expression.visit(_Tidy())  # (a part picked by a test may have brought parentheses)
    except (cst.ParserSyntaxError, RecursionError):
        return code
    if not isinstance(expression, (cst.Tuple, cst.GeneratorExp)):
        expression = expression.with_changes(lpar=[], rpar=[])
    return cst.Module([]).code_for_node(expression)

# Any number of axes of unknown size: ``(ANY_AXES, Size("in_features"))`` is an
# input whose rank is unknown and whose last axis is the class's input size
# parameter (a class converted on its own, without an example input).
ANY_AXES = Size("...")
# The same, after an operation that may have added or removed leading axes
# (``x.squeeze(1)``, ``a @ b``: ``axis_shapes.py``): equal to ``ANY_AXES``, but a
# parent that knows its input's rank must not give it to this shape.
SOME_AXES = Size("...", None, False)


@dataclass(frozen=True)
class Several:
    """The shapes of a tuple of arrays (``return mean, logvar``); never a layer input."""

    parts: tuple[Shape, ...]


class Bindings(dict):
    """A method's names -> the shapes of their values; ``dtypes``: names -> the dtype of
    their value in ``__init__`` terms, where it is known (``constructs/value_dtype.py``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dtypes: dict[str, str] = {}


def is_open(shape: Shape) -> bool:
    return bool(shape) and ANY_AXES in shape  # type: ignore[operator]


def open_shape(last: Size) -> Shape:
    return (ANY_AXES, last)


def keeps_input_rank(shape: Shape) -> bool:
    """Whether an open shape's leading axes are those of the input it came from."""
    return not shape or all(axis is None or axis.input_leading for axis in shape)


def product(sizes: Sequence[Axis]) -> Axis:
    """The product of sizes: a number when all are numbers, else an expression."""
    if any(size is None or size == ANY_AXES for size in sizes):
        return None
    numbers = [size.value for size in sizes if size.value is not None]  # type: ignore[union-attr]
    symbols = [size.operand() for size in sizes if size.value is None]  # type: ignore[union-attr]
    constant = math.prod(numbers)
    if abs(constant) > MAX_SIZE:
        return None
    if not symbols:
        return Size.number(constant)
    parts = ([str(constant)] if constant != 1 else []) + symbols
    return Size(" * ".join(parts))


def sum_sizes(sizes: Sequence[Size]) -> Size:
    """``a + b``: a number when all are numbers."""
    if all(size.value is not None for size in sizes):
        return Size.number(sum(size.value for size in sizes))  # type: ignore[misc]
    return Size(" + ".join(size.operand() for size in sizes))


def broadcast(left: Shape, right: Shape) -> Shape:
    """The shape of ``a + b`` (any elementwise operation of two arrays of the same rank).

    On an axis where the sizes differ, NumPy broadcasting succeeds only when they are
    equal or one is 1, and the result is then the larger: ``max(a, b)`` is exact in
    every case where the operation runs (where it does not, Linen fails too).  None
    where an axis is unknown or the ranks differ (but for the axes NumPy adds in front
    of the shorter shape, of size 1: ``(..., f) + (f,)``)."""
    if left is None or right is None or isinstance(left, Several) or isinstance(right, Several):
        return None
    if len(left) != len(right):
        left, right = _right_aligned(left, right), _right_aligned(right, left)
    if left is None or right is None or len(left) != len(right):
        return None
    axes = []
    for a, b in zip(left, right):
        if a == b:
            axes.append(a)
        elif (a is not None and a.value == 1) or (b is not None and b.value == 1):
            axes.append(b if a is not None and a.value == 1 else a)  # 1 gives way to any size, known or not
        elif a is None or b is None or ANY_AXES in (a, b):
            return None
        elif a.value is not None and b.value is not None:
            return None  # two different numbers: the operation itself fails
        else:
            axes.append(Size(f"max({tidy_code(a.code)}, {tidy_code(b.code)})"))
    return tuple(axes)


def _right_aligned(shape: tuple, other: tuple) -> Shape:
    """``shape`` with the leading axes of size 1 that broadcasting against ``other`` adds;
    an open shorter one (its rank unknown) is not aligned."""
    missing = len(other) - len(shape)
    if missing <= 0:
        return shape
    if is_open(shape):
        return None
    if is_open(other):  # ``(f,)`` against ``(..., a, f)``: the unknown axes stay unknown
        return None if missing > len(other) - 1 else (other[0],) + (Size.number(1),) * (missing - 1) + shape
    return (Size.number(1),) * missing + shape


def window_output(size: Axis, window: int, stride: int, padding: str) -> Axis:
    """Spatial size after a convolution or pooling window (``SAME`` or ``VALID``)."""
    if size is not None and size.value is None and size != ANY_AXES and padding in ("SAME", "VALID"):
        return _symbolic_window_output(size, window, stride, padding)
    if size is None or size.value is None:
        return size if size == ANY_AXES else None
    if padding == "SAME":
        return Size.number(-(-size.value // stride))
    if padding == "VALID":
        return Size.number(-(-(size.value - window + 1) // stride))
    return None


def _symbolic_window_output(size: Size, window: int, stride: int, padding: str) -> Size:
    """The same for a size known by name (``images_shape_1``): ``images_shape_1 // 4``
    for a VALID window of 4 with stride 4, ``(s + 1) // 2`` for SAME with stride 2."""
    reach = stride - window if padding == "VALID" else stride - 1  # ceil((s - w + 1) / t) = (s - w + t) // t
    if stride == 1:
        return size if reach == 0 else Size(_shifted(size, reach))
    numerator = size.operand() if reach == 0 else f"({_shifted(size, reach)})"
    return Size(f"{numerator} // {stride}")


def varying_window_output(size: Axis, window: int, stride: "Size", padding: Union[str, "Size"]) -> Axis:
    """``window_output`` for a stride or a padding known only by name in ``__init__`` (a loop's
    ``stride``, a ``padding: str`` field): ``(s - 3) // stride + 1`` for VALID, ``(s + stride - 1)
    // stride`` for SAME, and a padding by name chooses between them (every other string Flax
    takes, ``CIRCULAR``, ``REFLECT`` and ``CAUSAL``, keeps SAME's sizes)."""
    if size is None or size == ANY_AXES:
        return None
    if isinstance(padding, Size):
        valid, same = (varying_window_output(size, window, stride, kind) for kind in ("VALID", "SAME"))
        if valid is None or same is None:
            return None
        return Size(f"{_grouped(valid.code)} if {padding.operand()} == 'VALID' else {_grouped(same.code)}")
    if stride.value is not None:
        return window_output(size, window, stride.value, padding)
    if padding not in ("SAME", "VALID"):
        return None
    if padding == "VALID":
        return Size(f"({_shifted(size, -window)}) // {stride.operand()} + 1")
    return Size(f"({size.operand()} + {stride.operand()} - 1) // {stride.operand()}")


def _grouped(code: str) -> str:
    """``code`` as an operand of a conditional expression."""
    return f"({code})" if " if " in code else code


_TIGHT = (ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Call, ast.Subscript, ast.Attribute)


def _shifted(size: Size, by: int) -> str:
    """``size + by`` as code, a trailing integer folded in (``s - 2`` shifted by 1 is
    ``s - 1``)."""
    try:
        tree = ast.parse(size.code, mode="eval").body
    except SyntaxError:
        tree = None
    head = size.code
    if isinstance(tree, ast.BinOp) and isinstance(tree.op, (ast.Add, ast.Sub)) \
            and isinstance(tree.right, ast.Constant) and type(tree.right.value) is int:
        by += tree.right.value if isinstance(tree.op, ast.Add) else -tree.right.value
        tree, head = tree.left, ast.get_source_segment(size.code, tree.left) or ""
    # arithmetic binds tighter than the ``+``/``-`` appended, or as tight and to the left
    if by and not isinstance(tree, _TIGHT):
        head = f"({head})"
    return head if by == 0 else f"{head} {'+' if by > 0 else '-'} {abs(by)}"


# No array axis comes near this; beyond it, arithmetic is refused, not computed
# (``Block(9**9**9)`` would take forever to fold).
MAX_SIZE = 2 ** 63


def fold_integers(text: str) -> Optional[int]:
    """The value of integer arithmetic ``text`` (``+ - * // % **``, parentheses), or
    None when it is anything else or any step leaves ``[-MAX_SIZE, MAX_SIZE]``: each
    operation is checked before it is computed, so no input can make it slow."""
    import ast

    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    results: dict[int, int] = {}
    pending: list[tuple[ast.AST, bool]] = [(tree, False)]
    while pending:  # post-order, without recursion
        node, ready = pending.pop()
        if isinstance(node, ast.Constant) and type(node.value) is int:
            results[id(node)] = node.value
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            if not ready:
                pending += [(node, True), (node.operand, False)]
                continue
            results[id(node)] = -results[id(node.operand)] if isinstance(node.op, ast.USub) else results[id(node.operand)]
        elif isinstance(node, ast.BinOp):
            if not ready:
                pending += [(node, True), (node.left, False), (node.right, False)]
                continue
            value = _operate(node.op, results[id(node.left)], results[id(node.right)])
            if value is None:
                return None
            results[id(node)] = value
        else:
            return None
        if abs(results[id(node)]) > MAX_SIZE:
            return None
    return results[id(tree)]


def _operate(operator: ast.operator, left: int, right: int) -> Optional[int]:
    if isinstance(operator, ast.Pow):
        if right < 0 or (abs(left) > 1 and right * max(abs(left).bit_length() - 1, 1) > MAX_SIZE.bit_length()):
            return None
        return left ** right
    if isinstance(operator, ast.Mult):
        return None if left.bit_length() + right.bit_length() > MAX_SIZE.bit_length() + 1 else left * right
    if isinstance(operator, (ast.FloorDiv, ast.Mod)):
        if right == 0:
            return None
        return left // right if isinstance(operator, ast.FloorDiv) else left % right
    if isinstance(operator, ast.Add):
        return left + right
    if isinstance(operator, ast.Sub):
        return left - right
    return None


def int_literal(node: cst.BaseExpression) -> Optional[int]:
    if isinstance(node, cst.Integer):
        digits = node.value.replace("_", "")
        # past 20 digits it is no axis size (and int() refuses 4,300 digits with ValueError)
        return int(digits, 0) if len(digits) <= 20 else None
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = int_literal(node.expression)
        return None if inner is None else -inner
    return None


def int_tuple(node: Optional[cst.BaseExpression], rank: int) -> Optional[tuple[int, ...]]:
    """``(2, 2)``, ``[2, 2]`` or ``2`` (repeated ``rank`` times) as numbers."""
    if node is None:
        return None
    single = int_literal(node)
    if single is not None:
        return (single,) * rank
    if isinstance(node, (cst.Tuple, cst.List)):
        values = [int_literal(element.value) for element in node.elements]
        if all(value is not None for value in values):
            return tuple(values)  # type: ignore[arg-type]
    return None


def string_literal(node: Optional[cst.BaseExpression]) -> Optional[str]:
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value if isinstance(node.evaluated_value, str) else None
    return None


def literal_shape(node: cst.BaseExpression, constants: Mapping[str, int]) -> Shape:
    """A shape written as a tuple or list of integers or file-level integer
    constants, e.g. ``(1, 28, 28, 1)`` or ``(1, LENGTH)``."""
    if isinstance(node, (cst.Tuple, cst.List)):
        sizes = []
        for element in node.elements:
            value = element.value
            if isinstance(value, cst.Name) and value.value in constants:
                sizes.append(Size(value.value, constants[value.value]))
                continue
            number = int_literal(value)
            if number is None:
                return None
            sizes.append(Size.number(number))
        return tuple(sizes)
    return None


def integer_constants(module: cst.Module) -> dict[str, int]:
    """File-level ``NAME = 8`` / ``A, B = 8, 16`` integer constants."""
    found: dict[str, int] = {}
    for statement in module.body:
        if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1):
            continue
        target, value = statement.body[0].targets[0].target, statement.body[0].value
        pairs = [(target, value)]
        if isinstance(target, cst.Tuple) and isinstance(value, cst.Tuple) and \
                len(target.elements) == len(value.elements):
            pairs = [(t.value, v.value) for t, v in zip(target.elements, value.elements)]
        for name, number in pairs:
            if isinstance(name, cst.Name) and int_literal(number) is not None:
                found[name.value] = int_literal(number)  # type: ignore[assignment]
    return found


def with_unknown_batch(shape: Shape) -> Shape:
    """Axis 0 is the batch: the converted module must not depend on it."""
    if not shape or is_open(shape):
        return shape
    return (None,) + tuple(shape[1:])


def flatten(shape: Shape) -> Shape:
    """``x.reshape((x.shape[0], -1))``: batch kept, the rest multiplied."""
    if not shape or is_open(shape):
        return None
    return (shape[0], product(shape[1:]))

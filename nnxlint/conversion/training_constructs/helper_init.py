"""``init`` through a helper on a parameter, flax's common form (sst2, seq2seq, ppo)::

    def get_initial_params(rng, model):
        x = jnp.ones((2, 6))
        return model.init(rng, x)['params']

    def create_train_state(rng):
        model = models.Net(hidden=16)
        params = get_initial_params(rng, model)
        ...

The model is built by the caller and initialised by the helper.  In NNX it is built
with its weights where the helper is called, so the caller's statement is the init
site (``params = get_initial_params(...)`` -> ``model = models.Net(6, hidden=16,
rngs=nnx.Rngs(rng))``) and the helper goes.  The ``init`` call the rest of the
conversion reads (key, example inputs) is the helper's, with each of its parameters
replaced by the caller's argument and each of its locals by the value assigned to it,
so the example input ``jnp.ones((2, 6))`` gives the input sizes as at any init site.

Followed only where that is the same program: the helper is a file-level function
that builds the example input in plain assignments and returns ``init``'s variables
or their ``['params']``, is called once in the file and by no other file of the run,
and is given a model built earlier in the calling function; otherwise no fix, naming
what the helper does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, line_of, names_read
from nnxlint.conversion.shapes import string_literal
from nnxlint.textio import SourceError, read_source

if TYPE_CHECKING:
    from nnxlint.conversion.training import InitSite, TrainingConverter


def helper_site(converter: "TrainingConverter", call: cst.Call) -> Optional["InitSite"]:
    """The init site of ``call`` when it is a helper's ``init`` on a parameter (None when the
    call is of no file-level function or not on one of its parameters)."""
    from nnxlint.conversion.training import PARAMS, VARIABLES, InitSite

    method = converter._init_method(call)
    statement = converter._statement_of(call)
    helper = converter.parents.get(id(statement)) if statement is not None else None
    if method is None or not isinstance(method.value, cst.Name) or not isinstance(helper, cst.FunctionDef) \
            or converter.parents.get(id(helper)) is not converter.module or len(call.args) < 2:
        return None  # (an optax ``tx.init(params)`` has one argument)
    params = [param.name.value for param in helper.params.params]
    if method.value.value not in params:
        return None
    name = helper.name.value
    if method.attr.value != "init":
        raise Unconvertible(f"`{name}` calls `{method.attr.value}`; only `init` through a helper is converted")
    if helper.params.star_arg is not cst.MaybeSentinel.DEFAULT or helper.params.kwonly_params \
            or helper.params.star_kwarg is not None or helper.params.posonly_params:
        raise Unconvertible(f"`{name}` takes parameters other than plain positional ones")
    collection = _returned_collection(converter, helper, statement, call)
    caller_call, caller_statement = _only_call(converter, helper)
    bound = _bind(converter, helper, caller_call)
    model = bound.get(method.value.value)
    if not isinstance(model, cst.Name):
        raise Unconvertible(f"`{name}(...)` at line {line_of(converter.module, caller_call)} is given the model "
                            "as an expression, not a name built in the calling function")
    construction_statement = converter._construction_of(model.value, caller_statement)
    if construction_statement is None:
        raise Unconvertible(f"`{name}(...)` at line {line_of(converter.module, caller_call)} is given `{model.value}`, "
                            "not a model built earlier in the calling function")
    values = {**bound, **_locals(converter, helper, statement, bound)}
    _check_free_names(converter, call, values, caller_statement)
    init = call.visit(_Substitute(values))
    construction = construction_statement.body[0].value  # type: ignore[attr-defined]
    return InitSite(caller_statement, init, model.value, converter.linen_class(construction.func),  # type: ignore
                    construction, construction_statement, PARAMS if collection == "params" else VARIABLES,
                    helper=helper)


def _body(helper: cst.FunctionDef) -> list[cst.BaseStatement]:
    """The helper's statements without its docstring."""
    body = list(helper.body.body) if isinstance(helper.body, cst.IndentedBlock) else []
    if body and isinstance(body[0], cst.SimpleStatementLine) and isinstance(body[0].body[0], cst.Expr) \
            and isinstance(body[0].body[0].value, cst.SimpleString):
        body = body[1:]
    return body


def _returned_collection(converter: "TrainingConverter", helper: cst.FunctionDef,
                         statement: cst.SimpleStatementLine, call: cst.Call) -> Optional[str]:
    """``'params'`` when the helper returns ``init(...)['params']``, None when it returns the
    variables: ``return model.init(...)[...]``, or ``v = model.init(...)[...]`` then ``return v[...]``
    (``['params']`` taken once)."""
    body = _body(helper)
    name = helper.name.value
    position = next((index for index, line in enumerate(body) if line is statement), None)
    small = statement.body[0] if len(statement.body) == 1 else None
    if isinstance(small, cst.Return) and position == len(body) - 1:
        return _collection_of(small.value, call, name)
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name) \
            and position == len(body) - 2:
        last = body[-1]
        returned = last.body[0] if isinstance(last, cst.SimpleStatementLine) and len(last.body) == 1 else None
        if isinstance(returned, cst.Return):  # ``v = model.init(...)[...]``, ``return v[...]``
            first = _collection_of(small.value, call, name)
            second = _collection_of(returned.value, small.targets[0].target, name)
            if first is None or second is None:
                return first or second
    raise Unconvertible(f"`{name}` does more with `init`'s variables than return them or their ['params'] "
                        f"(line {line_of(converter.module, statement)})")


def _collection_of(returned: Optional[cst.BaseExpression], variables: cst.BaseExpression, helper: str) -> Optional[str]:
    if returned is variables or (isinstance(returned, cst.Name) and isinstance(variables, cst.Name)
                                 and returned.value == variables.value):
        return None
    if isinstance(returned, cst.Subscript) and len(returned.slice) == 1 \
            and isinstance(returned.slice[0].slice, cst.Index) \
            and string_literal(returned.slice[0].slice.value) == "params" \
            and (returned.value is variables or (isinstance(returned.value, cst.Name)
                                                 and isinstance(variables, cst.Name)
                                                 and returned.value.value == variables.value)):
        return "params"
    raise Unconvertible(f"`{helper}` returns something else than `init`'s variables or their ['params']")


def _only_call(converter: "TrainingConverter", helper: cst.FunctionDef) -> tuple[cst.Call, cst.SimpleStatementLine]:
    """The one call of the helper, assigned to one name; no other file of the run may use it."""
    from nnxlint.conversion.project_files import importers

    name = helper.name.value
    calls = [node for node in walk(converter.module)
             if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == name]
    references = [node for node in walk(converter.module) if isinstance(node, cst.Name) and node.value == name]
    if len(calls) != 1 or len(references) != 2:  # the ``def`` and the call
        raise Unconvertible(f"`{name}`, which calls `init` on its parameter, is used {len(references) - 1} times in "
                            "the file; it is converted only where it is called once")
    user = next((importer.path for importer in importers(converter.project, converter.path, [name])
                 if _reads(importer.path, importer.spellings)), None) if converter.path else None
    if user is not None:
        raise Unconvertible(f"`{name}`, which calls `init` on its parameter, is also used by {user}")
    statement = converter._statement_of(calls[0])
    small = statement.body[0] if statement is not None and len(statement.body) == 1 else None
    if not (isinstance(small, cst.Assign) and small.value is calls[0] and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)):
        raise Unconvertible(f"the result of `{name}(...)` at line {line_of(converter.module, calls[0])} is not "
                            "assigned to one name")
    return calls[0], statement


def _reads(path: str, spellings) -> bool:
    """Whether the file at ``path`` names the helper (``train.get_initial_params``), not only its module."""
    try:
        text = read_source(path).text
    except SourceError:
        return True
    return any(re.search(rf"(?<![\w.]){re.escape(spelling)}\b", text) for spelling in spellings)


def _bind(converter: "TrainingConverter", helper: cst.FunctionDef, call: cst.Call) -> dict[str, cst.BaseExpression]:
    """Each helper parameter -> the expression the call gives it (its default where none)."""
    params = list(helper.params.params)
    bound: dict[str, cst.BaseExpression] = {}
    for index, arg in enumerate(call.args):
        if arg.star:
            raise Unconvertible(f"`{helper.name.value}(...)` is called with *args or **kwargs")
        if arg.keyword is None:
            if index >= len(params):
                raise Unconvertible(f"`{helper.name.value}(...)` is given more arguments than it takes")
            bound[params[index].name.value] = arg.value
        else:
            bound[arg.keyword.value] = arg.value
    for param in params:
        if param.name.value not in bound:
            if param.default is None:
                raise Unconvertible(f"`{helper.name.value}(...)` at line {line_of(converter.module, call)} "
                                    f"does not pass `{param.name.value}`")
            bound[param.name.value] = param.default
    return bound


def _locals(converter: "TrainingConverter", helper: cst.FunctionDef, init: cst.SimpleStatementLine,
            bound: dict[str, cst.BaseExpression]) -> dict[str, cst.BaseExpression]:
    """The helper's assignments before ``init`` (the example input), each as the caller's expression."""
    found: dict[str, cst.BaseExpression] = {}
    for statement in _body(helper):
        if statement is init:
            return found
        small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
            else None
        if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                and isinstance(small.targets[0].target, cst.Name)):
            raise Unconvertible(f"`{helper.name.value}` does more than build the example input before `init` "
                                f"(line {line_of(converter.module, statement)})")
        found[small.targets[0].target.value] = small.value.visit(_Substitute({**bound, **found}))
    return found



def _check_free_names(converter: "TrainingConverter", call: cst.Call, values: dict[str, cst.BaseExpression],
                      caller_statement: cst.SimpleStatementLine) -> None:
    """A name the helper reads from the file (``jnp``, ``INPUT_SHAPE``) must mean the same in the caller."""
    caller = converter.parents.get(id(caller_statement))
    if not isinstance(caller, cst.FunctionDef):
        return
    bound_there = {param.name.value for param in walk(caller.params) if isinstance(param, cst.Param)}
    bound_there |= {name.value for target in walk(caller.body) if isinstance(target, cst.AssignTarget)
                    for name in walk(target.target) if isinstance(name, cst.Name)}
    expressions = [call, *values.values()]
    for expression in expressions:
        for name in names_read(expression):
            if name not in values and name in bound_there:
                raise Unconvertible(f"the helper reads `{name}` from the file, which the calling function "
                                    f"`{caller.name.value}` binds otherwise")


class _Substitute(cst.CSTTransformer):
    """Replaces the names read (not attribute or keyword names) by expressions."""

    def __init__(self, values: dict[str, cst.BaseExpression]) -> None:
        super().__init__()
        self.values = values

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        return True

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        return updated_node.with_changes(attr=original_node.attr)

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        return updated_node.with_changes(keyword=original_node.keyword)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        value = self.values.get(original_node.value)
        if value is None:
            return updated_node
        if isinstance(value, _LOOSE) and not value.lpar:  # ``x * 2`` with ``x = a + b``: ``(a + b) * 2``
            return value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return value


_LOOSE = (cst.BinaryOperation, cst.UnaryOperation, cst.BooleanOperation, cst.Comparison, cst.IfExp, cst.Lambda,
          cst.NamedExpr)

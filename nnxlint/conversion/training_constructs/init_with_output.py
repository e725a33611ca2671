"""A model's output from ``init_with_output`` in a file that imports its class, as tests do
(flax's sst2 and ogbg ``models_test.py``)::

    model = models.Net(width=8)
    y, _ = model.init_with_output(rng, x)

becomes, where the model's input sizes and key are known::

    model = models.Net(x.shape[-1], width=8, rngs=nnx.Rngs(rng))
    y = model(x)

The construction moves down to the first statement that uses the model (the key and the
example input exist there); the sizes are read off the example input at run time (a graph's
``graphs.nodes.shape[-1]``).  Followed only where that is the same program: the
construction and the uses in one function body, the model used otherwise only through
methods the NNX class defines (sst2's ``model.initialize_carry(...)``), the variables
discarded (``_``, or a name read nowhere), no ``method=``/``mutable=``, and no train/eval
argument the NNX class turns into a mode; otherwise the reason, with its line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import ConvertedClass, line_of, names_read, single_assign
from nnxlint.conversion.constructs.jraph_graph import graph_runtime_size

if TYPE_CHECKING:
    from nnxlint.conversion.project_files import _Constructions

_REFUSED_KEYWORDS = ("method", "mutable", "capture_intermediates", "rngs")


def model_outputs(module: cst.Module, owner: "_Constructions", nnx: str,
                  env) -> tuple[cst.Module, list[tuple[object, str]], list[cst.CSTNode]]:
    """The module with each ``y, _ = model.init_with_output(key, x)`` it can follow converted,
    (line, why) for each it cannot, and the constructions it converted."""
    edits: dict[int, list[cst.BaseStatement]] = {}  # id(statement) -> what replaces it
    problems: list[tuple[object, str]] = []
    for function in walk(module):
        if isinstance(function, cst.FunctionDef) and isinstance(function.body, cst.IndentedBlock):
            for site in _sites(module, owner, function):
                why = _Site(module, owner, nnx, env, function, *site).convert(edits)
                if why is not None:
                    problems.append((line_of(module, site[1]), why))
    converted = [statement for statement in walk(module) if edits.get(id(statement)) == []]
    if not edits:
        return module, problems, converted
    return module.visit(_Replace(edits)), problems, converted


def _sites(module: cst.Module, owner: "_Constructions", function: cst.FunctionDef):
    """(construction statement, init statement, model name) for each ``y, v =
    name.init_with_output(...)`` of the function body whose ``name`` a builder built above."""
    body = function.body.body  # type: ignore[union-attr]
    for index, statement in enumerate(body):
        small = single_assign(statement)
        if small is None or not isinstance(small.value, cst.Call):
            continue
        func = small.value.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "init_with_output"
                and isinstance(func.value, cst.Name)):
            continue
        name = func.value.value
        for earlier in reversed(body[:index]):
            assign = single_assign(earlier)
            if assign is not None and isinstance(assign.targets[0].target, cst.Name) \
                    and assign.targets[0].target.value == name:
                if isinstance(assign.value, cst.Call) and owner.spelled(module, assign.value.func):
                    yield earlier, statement, name
                break



def _plain(node: cst.BaseExpression) -> bool:
    """A name or an attribute chain of one (``x``, ``self.graphs``): evaluating it twice is the same."""
    while isinstance(node, cst.Attribute):
        node = node.value
    return isinstance(node, cst.Name)



class _Site:
    def __init__(self, module: cst.Module, owner: "_Constructions", nnx: str, env, function: cst.FunctionDef,
                 construction: cst.SimpleStatementLine, init: cst.SimpleStatementLine, name: str) -> None:
        self.module, self.owner, self.nnx, self.env = module, owner, nnx, env
        self.function, self.construction, self.init, self.name = function, construction, init, name
        self.body = list(function.body.body)  # type: ignore[union-attr]
        self.code = module.code_for_node

    def convert(self, edits: dict[int, list[cst.BaseStatement]]) -> Optional[str]:
        """Records the edits, or says why the site is not converted."""
        built = self.owner.spelled(self.module, single_assign(self.construction).value.func)  # type: ignore
        class_name = self.owner.builders[built]  # type: ignore[index]
        converted: ConvertedClass = self.owner.classes[class_name]
        call: cst.Call = single_assign(self.init).value  # type: ignore[union-attr,assignment]
        target = single_assign(self.init).targets[0].target  # type: ignore[union-attr]
        if not isinstance(target, (cst.Tuple, cst.List)) or len(target.elements) != 2:
            return f"`{self.name}.init_with_output(...)` is not unpacked as `output, variables`"
        output, variables = (element.value for element in target.elements)
        if not (isinstance(variables, cst.Name) and (variables.value == "_" or self._reads(variables.value) == 1)):
            return (f"the variables of `{self.name}.init_with_output(...)` are read; only `output, _ = "
                    f"{self.name}.init_with_output(...)` is converted")
        positional = [arg for arg in call.args if arg.keyword is None]
        if any(arg.star for arg in call.args) or not positional:
            return f"`{self.name}.init_with_output(...)` without a key, or with *args/**kwargs"
        refused = next((arg.keyword.value for arg in call.args
                        if arg.keyword is not None and arg.keyword.value in _REFUSED_KEYWORDS), None)
        if refused is not None:
            return f"`{self.name}.init_with_output(..., {refused}=...)` is not converted"
        inputs = [arg.value for arg in positional[1:]]
        mode = converted.mode
        if mode is not None and (len(inputs) > mode.index or any(
                arg.keyword is not None and arg.keyword.value == mode.name for arg in call.args)):
            return f"the NNX `{class_name}` turns `{mode.name}` into a train/eval mode, which the call passes"
        first_use = self._first_use(converted)
        if isinstance(first_use, str):
            return first_use
        if id(first_use) in edits:  # another model is built before the same statement
            return f"line {line_of(self.module, first_use)} is the first use of two models"
        sizes = self._sizes(converted, class_name, inputs, first_use)
        if isinstance(sizes, str):
            return sizes
        key = positional[0].value
        if converted.uses_rngs and not self._available([key], first_use):
            return f"the key `{self.code(key)}` does not exist where `{self.name}` is first used"
        construction: cst.Call = single_assign(self.construction).value  # type: ignore[union-attr,assignment]
        front, back = ([], [f"{parameter}={size}" for parameter, size in sizes.items()]) if built != class_name \
            else (list(sizes.values()), [])  # a factory function passes them on, keyword-only
        if converted.uses_rngs:
            back.append(f"rngs={self.nnx}.Rngs({self.code(key)})")
        new_construction = self.construction.with_changes(body=[single_assign(self.construction).with_changes(
            value=_with_args(construction, front, back))])
        if isinstance(output, cst.Tuple):
            output = output.with_changes(lpar=[], rpar=[])
        rest = [arg for arg in call.args if arg is not positional[0]]
        if rest:
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        applied = call.with_changes(func=cst.Name(self.name), args=rest)
        new_init = self.init.with_changes(body=[cst.Assign([cst.AssignTarget(output)], applied)])
        edits[id(self.construction)] = []
        if first_use is self.init:
            edits[id(self.init)] = [new_construction, new_init]
        else:
            edits[id(first_use)] = [new_construction, first_use]
            edits[id(self.init)] = [new_init]
        return None

    def _reads(self, name: str) -> int:
        return sum(1 for node in walk(self.function.body) if isinstance(node, cst.Name) and node.value == name)

    def _first_use(self, converted: ConvertedClass):
        """The first statement after the construction that reads the model; every read must be
        ``init_with_output`` here or a method the NNX class defines."""
        methods = {statement.name.value for statement in converted.node.body.body  # type: ignore[union-attr]
                   if isinstance(statement, cst.FunctionDef)} - {"__init__", "__call__"}
        start = self.body.index(self.construction)
        first, count = None, 0
        for statement in self.body[start + 1:]:
            reads = [node for node in walk(statement) if isinstance(node, cst.Name) and node.value == self.name]
            if not reads:
                continue
            first = first or statement
            count += len(reads)
            allowed = [node for node in walk(statement) if isinstance(node, cst.Attribute)
                       and isinstance(node.value, cst.Name) and node.value.value == self.name
                       and (node.attr.value in methods or (statement is self.init and node.attr.value
                                                           == "init_with_output"))]
            if len(allowed) != len(reads):
                return (f"line {line_of(self.module, statement)} uses `{self.name}` other than through "
                        f"`init_with_output` or a method of the NNX class")
        if count + 1 != self._reads(self.name):  # the construction binds it; nothing else may read it
            return f"`{self.name}` is used in a nested function or bound again"
        return first

    def _sizes(self, converted: ConvertedClass, class_name: str, inputs: list[cst.BaseExpression],
               first_use: cst.BaseStatement):
        if converted.layer_size_params:
            return f"the input size `{converted.layer_size_params[0]}` of `{class_name}` is not known here"
        sizes: dict[str, str] = {}
        for parameter, index in converted.size_params.items():
            value = inputs[index] if index < len(inputs) else None
            if value is None or not _plain(value) or not self._available([value], first_use):
                return f"the input size `{parameter}` of `{class_name}` cannot be read off the example input"
            axis = converted.size_axes[parameter][1] if parameter in converted.size_axes else -1
            size = graph_runtime_size(self.env, class_name, index, parameter, f"{self.code(value)}.shape[{axis}]")
            sizes[parameter] = size  # type: ignore[assignment]
        return sizes

    def _available(self, expressions: list[cst.BaseExpression], where: cst.BaseStatement) -> bool:
        """Each expression's root name is bound before ``where`` and the same at the init site: a
        parameter of the function, or assigned before ``where`` and not again up to the init."""
        params = {param.name.value for param in walk(self.function.params) if isinstance(param, cst.Param)}
        position, init = self.body.index(where), self.body.index(self.init)

        def assigned(statements, name: str) -> bool:
            return any(isinstance(target, cst.AssignTarget) and any(
                isinstance(node, cst.Name) and node.value == name for node in walk(target.target))
                for statement in statements for target in walk(statement))

        for expression in expressions:
            for name in names_read(expression):
                if name in params:
                    continue
                if assigned(self.body[position:init], name) or (
                        not assigned(self.body[:position], name) and name not in self._module_names()):
                    return False
        return True

    def _module_names(self) -> set[str]:
        """What the module's own statements bind (imports, constants; not the functions' locals)."""
        found = {statement.name.value for statement in self.module.body
                 if isinstance(statement, (cst.FunctionDef, cst.ClassDef))}
        return found | {node.value for statement in self.module.body if isinstance(statement, cst.SimpleStatementLine)
                        for target in walk(statement) if isinstance(target, (cst.AssignTarget, cst.ImportAlias))
                        for node in walk(target) if isinstance(node, cst.Name)}


def _with_args(call: cst.Call, front: list[str], back: list[str]) -> cst.Call:
    """``call`` with more arguments before and after its own, laid out as its own are (one a
    line in a call over several lines)."""
    def parsed(code: str) -> cst.Arg:
        return cst.ensure_type(cst.parse_expression(f"f({code})"), cst.Call).args[0]

    args = list(call.args)
    if len(args) > 1 and isinstance(args[0].comma, cst.Comma):
        separator = args[0].comma
    elif isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):  # ``f(\n    a,\n)``
        separator = cst.Comma(whitespace_after=call.whitespace_before_args)
    else:
        separator = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    if not args:
        merged = [parsed(code).with_changes(comma=separator) for code in front + back]
        return call.with_changes(args=[*merged[:-1], merged[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)])
    last, closing = args[-1].comma, args[-1].whitespace_after_arg  # (``\n    )`` of ``f(\n    a, b\n)``)
    merged = [parsed(code).with_changes(comma=separator) for code in front] + args[:-1] \
        + [args[-1].with_changes(comma=separator, whitespace_after_arg=cst.SimpleWhitespace(""))] \
        + [parsed(code).with_changes(comma=separator) for code in back]
    merged[-1] = merged[-1].with_changes(comma=last, whitespace_after_arg=closing)
    return call.with_changes(args=merged)


class _Replace(cst.CSTTransformer):
    def __init__(self, edits: dict[int, list[cst.BaseStatement]]) -> None:
        super().__init__()
        self.edits = edits

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock):
        if not any(id(statement) in self.edits for statement in original_node.body):
            return updated_node
        body: list[cst.BaseStatement] = []
        for old, new in zip(original_node.body, updated_node.body):
            body.extend(self.edits.get(id(old), [new]))
        return updated_node.with_changes(body=body)

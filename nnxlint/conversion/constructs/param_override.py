"""A subclass of a Flax layer that overrides ``param`` to transform one named
parameter, the weight-standardised convolution of BiT and ViT's hybrid models::

    class StdConv(nn.Conv):
        def param(self, name, *args, **kwargs):
            param = super().param(name, *args, **kwargs)
            if name == "kernel":
                param = weight_standardize(param, axis=[0, 1, 2], eps=1e-5)
            return param

Linen's layer reads its kernel through ``self.param``, so the layer computes with
the transformed kernel while the stored parameter stays the raw one.  The NNX
layer reads ``self.kernel`` and hands (inputs, kernel, bias) to its
``promote_dtype`` constructor argument before computing; the converted subclass
passes a hook that applies the same statements to that one array first, then
promotes as the default does::

    def _std_conv_promote_dtype(args, /, *, dtype=None, inexact=True):
        inputs, param, bias = args
        param = weight_standardize(param, axis=[0, 1, 2], eps=1e-5)
        return nnx.nn.dtypes.promote_dtype((inputs, param, bias), dtype=dtype, inexact=inexact)


    class StdConv(nnx.Conv):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, promote_dtype=_std_conv_promote_dtype, **kwargs)

The parameters keep their names (``kernel``, ``bias``), so Linen weights load
unchanged, and a construction ``StdConv(...)`` converts as the layer it
subclasses, under the subclass's name (Linen numbers unnamed ones ``StdConv_0``).
Another file of the run builds it the same way, as it spells it
(``models_resnet.StdConv(...)``, ViT's hybrid stem), when the subclass's own file
converts it (a class there builds it) in the same fix (``linen_users.py``); a
Linen class of another file that builds it and stays Linen keeps it Linen.
Converted only for that shape (the super call passing the override's parameters
through unchanged, whatever they are named: ``(self, name, init_fn, *init_args)`` as
in vision_transformer, or ``(self, name, *args, **kwargs)``; one
``if name == '<parameter>':`` whose statements read neither ``self`` nor the
name, the value returned), a parameter of ``linen_map.PROMOTED_ARRAYS`` and a
subclass of the same file; Linen's ``mask`` multiplies the kernel after the
override but NNX's before the hook, so a construction passing ``mask`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.flax_api import linen_member
from nnxlint.imports import is_docstring
from nnxlint.conversion.base import FileEnv, Unconvertible, names_read
from nnxlint.conversion.linen_map import LAYERS, PROMOTED_ARRAYS
from nnxlint.conversion.naming import snake_case

if TYPE_CHECKING:
    from nnxlint.conversion.class_set import ClassSet


@dataclass(frozen=True)
class ParamOverride:
    name: str  # the subclass
    layer: str  # the Linen layer it subclasses (``Conv``)
    parameter: str  # the parameter it transforms (``kernel``)
    variable: str  # the local that holds the parameter in the override (``param``)
    statements: tuple[cst.BaseStatement, ...]  # the transform, applied to ``variable``
    node: cst.ClassDef


def subclassed_layer(env: FileEnv, node: cst.ClassDef) -> Optional[str]:
    """The Flax layer a class of the file subclasses directly (``Conv`` for ``nn.Conv``), or None."""
    return _layer_base(node, env.resolve)


def layer_subclasses(module: cst.Module, resolve: Callable[[cst.BaseExpression], Optional[str]]) -> list[str]:
    """The file's classes that subclass a Flax layer directly: other files may build them as one."""
    return [statement.name.value for statement in module.body
            if isinstance(statement, cst.ClassDef) and _layer_base(statement, resolve) is not None]


def _layer_base(node: cst.ClassDef, resolve: Callable[[cst.BaseExpression], Optional[str]]) -> Optional[str]:
    if len(node.bases) != 1 or node.keywords:
        return None
    layer = linen_member(resolve(node.bases[0].value))
    return layer if layer in LAYERS else None  # ``class Dense(Module)`` is a module of its own


def param_override(env: FileEnv, func: cst.BaseExpression) -> Optional[ParamOverride]:
    """The override a construction's class makes, when it names a class of the file that
    subclasses a Flax layer and defines ``param``, or such a class of another file of the run
    that converts it; refused with the reason for any other shape."""
    if env.foreign_overrides and isinstance(func, (cst.Name, cst.Attribute)) \
            and env.code(func) in env.foreign_overrides:
        override = env.foreign_overrides[env.code(func)]
        if override is None:
            raise Unconvertible(f"`{env.code(func)}` overrides `param` of a Flax layer; its own file converts it "
                                "only with a class of that file that builds it")
        return replace(override, name=env.code(func))  # built as this file spells it
    name = func.value if isinstance(func, cst.Name) else None
    node = next((statement for statement in env.module.body if isinstance(statement, cst.ClassDef)
                 and statement.name.value == name), None)
    if node is None or subclassed_layer(env, node) is None:
        return None
    binding = env.scope.lookup(name)
    if binding is not None and binding.node is not node:
        return None
    return read_override(env, node)


def read_override(env: FileEnv, node: cst.ClassDef) -> ParamOverride:
    name, layer = node.name.value, subclassed_layer(env, node)
    methods = [statement for statement in node.body.body if isinstance(statement, cst.FunctionDef)]
    others = [statement for statement in node.body.body
              if not isinstance(statement, cst.FunctionDef) and not is_docstring(statement)]
    if others or [method.name.value for method in methods] != ["param"]:
        raise Unconvertible(f"`{name}` subclasses `nn.{layer}`: only a subclass whose one member is a `param` "
                            "override is converted")
    if layer not in PROMOTED_ARRAYS:
        raise Unconvertible(f"`{name}` overrides `param` of `nn.{layer}`, whose NNX layer has no "
                            "`promote_dtype` hook to apply it in")
    method = methods[0]
    line = f"`{name}.param` (line {_line(env, method)})"
    params = method.params
    if method.decorators or len(params.params) < 2 or params.posonly_params \
            or any(param.default is not None for param in (*params.params, *params.kwonly_params)):
        raise Unconvertible(f"{line}: takes other parameters than `(self, name, ...)` without defaults")
    name_param = params.params[1].name.value
    body = list(method.body.body) if isinstance(method.body, cst.IndentedBlock) else []
    body = [statement for statement in body if not is_docstring(statement)]
    if len(body) != 3:
        raise Unconvertible(f"{line}: only `p = super().param(name, ...)`, one `if name == '<parameter>':` "
                            "transforming `p`, and `return p` are converted")
    variable = _super_param(body[0], params)
    parameter, statements = _transform(body[1], name_param, variable)
    if variable is None or parameter is None or not _returns(body[2], variable):
        raise Unconvertible(f"{line}: only `p = super().param(name, ...)`, one `if name == '<parameter>':` "
                            "transforming `p`, and `return p` are converted")
    arrays = PROMOTED_ARRAYS[layer]
    if parameter not in arrays:
        raise Unconvertible(f"{line} transforms `{parameter}`, which `nn.{layer}` does not have")
    read = set().union(*(names_read(statement) for statement in statements))
    own = {param.name.value for param in (*params.params, *params.kwonly_params, params.star_arg, params.star_kwarg)
           if isinstance(param, cst.Param)}
    if read & own or variable in set(arrays) - {parameter}:
        raise Unconvertible(f"{line}: the transform of `{parameter}` reads `self`, the override's parameters "
                            "or another array of the layer")
    if env.scope.lookup(_hook_name(name)) is not None:
        raise Unconvertible(f"`{name}`: the file already defines `{_hook_name(name)}`, the name its NNX "
                            "promotion hook would take")
    return ParamOverride(name, layer, parameter, variable, tuple(statements), node)


def check_construction(name: str, keywords) -> None:
    if "mask" in keywords:
        raise Unconvertible(f"`{name}(mask=...)`: Linen masks the kernel after the `param` override, "
                            "NNX before its `promote_dtype` hook")


def hold_users(env: FileEnv, classes: ClassSet, held: Mapping[str, str]) -> None:
    """A subclass converts for all the classes of the run that build it or for none: one that
    stays Linen (here, or in another file: ``held``) keeps the others Linen."""
    for override in _overrides(env):
        users = [name for name, node in env.linen_classes.items() if _builds(node, override.name)]
        if override.name in held:
            why = f"which stays Linen: {held[override.name]}"
        else:
            kept = next((name for name in users if name in classes.reasons), None)
            if kept is None:
                continue
            why = f"which `{kept}` also builds and which stays Linen with it: {classes.reasons[kept]}"
        for name in users:
            if name not in classes.reasons:
                classes.keep_linen(name, f"builds `{override.name}`, {why}")
        classes.close_over_uses()


def override_names(env: FileEnv) -> list[str]:
    """The file's subclasses of a Flax layer that override ``param`` (what other files may build)."""
    return [override.name for override in _overrides(env)]


def converted_override(env: FileEnv, classes: ClassSet, name: str) -> Optional[ParamOverride]:
    """The file's subclass ``name`` when its fix converts it (a converted class builds it)."""
    return next((override for override in _overrides(env) if override.name == name and any(
        _builds(classes.converted[user].node, name) for user in classes.converted if user in env.linen_classes)),
        None)


def converted_overrides(env: FileEnv, classes: ClassSet, new: dict) -> None:
    """Each subclass that converted classes build, replaced with its NNX class and promotion hook."""
    for override in _overrides(env):
        if any(_builds(classes.converted[name].node, override.name) for name in classes.converted
               if name in env.linen_classes):
            new[override.node] = cst.FlattenSentinel(_nnx_statements(env, override))


def _nnx_statements(env: FileEnv, override: ParamOverride) -> list[cst.BaseStatement]:
    module, nnx = env.module, env.nnx
    newline, indent = module.default_newline, module.default_indent
    hook = _hook_name(override.name)
    arrays = [override.variable if array == override.parameter else array
              for array in PROMOTED_ARRAYS[override.layer]]
    statements = [statement.with_changes(leading_lines=[]) for statement in override.statements]
    code = cst.Module(statements, default_indent=indent, default_newline=newline).code
    transform = "".join(f"{indent}{line}{newline}" if line else newline for line in code.splitlines())
    function = (f"def {hook}(args, /, *, dtype=None, inexact=True):{newline}"
                f'{indent}"""`{override.name}`\'s Linen `param` override: `{override.parameter}` transformed as '
                f'the layer reads it, then promoted."""{newline}'
                f"{indent}{', '.join(arrays)} = args{newline}{transform}"
                f"{indent}return {nnx}.nn.dtypes.promote_dtype(({', '.join(arrays)}), dtype=dtype, "
                f"inexact=inexact){newline}")
    docstring = next((statement for statement in override.node.body.body if is_docstring(statement)), None)
    init = (f"def __init__(self, *args, **kwargs):{newline}"
            f"{indent}super().__init__(*args, promote_dtype={hook}, **kwargs){newline}")
    body = [cst.parse_statement(init, config=module.config_for_parsing)]
    if docstring is not None:
        body = [docstring, body[0].with_changes(leading_lines=[cst.EmptyLine(indent=False)])]
    first = cst.parse_statement(function, config=module.config_for_parsing)
    node = override.node
    nnx_class = node.with_changes(bases=[cst.Arg(cst.parse_expression(f"{nnx}.{LAYERS[override.layer].nnx}"))],
                                  body=node.body.with_changes(body=body),
                                  leading_lines=[cst.EmptyLine(indent=False)] * 2)
    return [first.with_changes(leading_lines=node.leading_lines), nnx_class]


def _hook_name(name: str) -> str:
    """``StdConv`` -> ``_std_conv_promote_dtype``."""
    return f"_{snake_case(name)}_promote_dtype"


def _overrides(env: FileEnv) -> list[ParamOverride]:
    overrides = []
    for statement in env.module.body:
        if isinstance(statement, cst.ClassDef) and subclassed_layer(env, statement) is not None \
                and statement.name.value not in env.linen_classes:
            try:
                overrides.append(read_override(env, statement))
            except Unconvertible:
                continue  # its users are refused with the reason
    return overrides


def _builds(node: cst.CSTNode, name: str) -> bool:
    """Whether the class reads the subclass: builds it, or makes a ``partial`` of it."""
    return any(isinstance(child, cst.Name) and child.value == name for child in walk(node))


def _super_param(statement: cst.BaseStatement, params: cst.Parameters) -> Optional[str]:
    """``p = super().param(name, init_fn, *init_args, **kwargs)``, the override's own parameters passed
    on unchanged and in order (keyword-only ones as ``k=k``) -> ``p``."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1 \
            or not isinstance(statement.body[0], cst.Assign) or len(statement.body[0].targets) != 1:
        return None
    target, call = statement.body[0].targets[0].target, statement.body[0].value
    if not (isinstance(target, cst.Name) and isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
            and call.func.attr.value == "param" and isinstance(call.func.value, cst.Call)
            and isinstance(call.func.value.func, cst.Name) and call.func.value.func.value == "super"
            and not call.func.value.args):
        return None
    passed = [(arg.star, arg.keyword.value if arg.keyword is not None else None,
               arg.value.value if isinstance(arg.value, cst.Name) else None) for arg in call.args]
    own = [("", None, param.name.value) for param in params.params[1:]]
    if isinstance(params.star_arg, cst.Param):
        own.append(("*", None, params.star_arg.name.value))
    own += [("", param.name.value, param.name.value) for param in params.kwonly_params]
    if params.star_kwarg is not None:
        own.append(("**", None, params.star_kwarg.name.value))
    return target.value if passed == own else None


def _transform(statement: cst.BaseStatement, name_param: str,
               variable: Optional[str]) -> tuple[Optional[str], list[cst.BaseStatement]]:
    """``if name == 'kernel': <statements>`` -> ('kernel', statements)."""
    if not isinstance(statement, cst.If) or statement.orelse is not None:
        return None, []
    test = statement.test
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].operator, cst.Equal)):
        return None, []
    sides = [test.left, test.comparisons[0].comparator]
    names = [side for side in sides if isinstance(side, cst.Name) and side.value == name_param]
    strings = [side for side in sides if isinstance(side, cst.SimpleString)]
    body = list(statement.body.body) if isinstance(statement.body, cst.IndentedBlock) else []
    if len(names) != 1 or len(strings) != 1 or not body or variable is None \
            or any(isinstance(child, (cst.Return, cst.Yield, cst.Global, cst.Nonlocal)) for child in walk(statement)):
        return None, []
    return strings[0].evaluated_value, body


def _returns(statement: cst.BaseStatement, variable: Optional[str]) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 \
        and isinstance(statement.body[0], cst.Return) and isinstance(statement.body[0].value, cst.Name) \
        and statement.body[0].value.value == variable


def _line(env: FileEnv, node: cst.CSTNode) -> int:
    return env.module.code.count("\n", 0, env.module.code.find(env.code(node))) + 1


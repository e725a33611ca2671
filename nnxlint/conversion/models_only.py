"""Converting the model classes of a file without its training code.

A models file (``models.py``, with ``init`` and the training loop in
``train.py``, or nowhere) converts class by class: each class the file's other
code does not use converts when it can, the others stay Linen with their reason
(``class_set.ClassSet``).  ``NAME = functools.partial(Class, field=...)`` keeps
working on the converted class and does not hold a class back.  Where Linen
classes stay, the Linen import stays and ``from flax import nnx`` joins it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.imports import is_docstring

from nnxlint.conversion.base import Unconvertible
from nnxlint.conversion.constructs.linen_bridge import bridge_partials, handed_in_layer
from nnxlint.conversion.constructs.param_override import converted_overrides, hold_users
from nnxlint.conversion.import_lines import is_import
from nnxlint.conversion.linen_map import LAYERS

if TYPE_CHECKING:
    from nnxlint.conversion.file import Replacement, FileConverter

_PARTIAL = ("functools.partial",)


class ModelsOnly:
    def __init__(self, converter: "FileConverter") -> None:
        self.converter = converter
        self.classes = converter.classes

    def run(self, training_reason: str) -> dict[cst.CSTNode, "Replacement"]:
        converter = self.converter
        linen_classes = converter.linen_classes
        for name, line in self.used_outside().items():
            self.classes.keep_linen(name, f"the code at line {line} uses it and is not converted ({training_reason})")
        self.keep_classes_given_linen_layers()
        for name, reason in converter.held.items():
            self.classes.keep_linen(name, reason)
        for name in self.classes.builders_first(linen_classes):  # a builder gives its blocks their shapes
            if name not in self.classes.reasons and name not in self.classes.converted:
                self.classes.try_convert(name)
        self.classes.close_over_uses()
        hold_users(converter.env, self.classes, converter.held)  # ``constructs/param_override.py``
        converted = [name for name in linen_classes if name not in self.classes.reasons]
        if not converted:
            raise Unconvertible(training_reason)
        new: dict[cst.CSTNode, Replacement] = {}
        variable_classes = converter._variable_classes()
        for statement in converter.module.body:
            if isinstance(statement, cst.ClassDef) and statement.name.value in converted:
                node = self.classes.converted[statement.name.value].node
                new[statement] = cst.FlattenSentinel([*variable_classes, node]) if variable_classes else node
                variable_classes = []
            elif isinstance(statement, cst.FunctionDef) and self._factory_class(statement) in converted:
                new[statement] = self._pass_through(statement)
            elif not is_import(statement):
                new[statement] = statement
        converted_overrides(converter.env, self.classes, new)
        converter.bridged_passed = bridge_partials(converter, new)
        converter.plain_functions_to_nnx(new)
        converter.convert_imports(new)
        return new

    def users_outside(self) -> dict[str, int]:
        """Linen classes of the file that its other code names (itself, or through a
        module-level ``partial`` of it: ``model = ResNet18()`` uses ``ResNet``), with the
        index of the first top-level statement that does (found once per file: the
        training attempt asks first)."""
        converter = self.converter
        if converter.users_outside is not None:
            return converter.users_outside
        linen_classes = converter.linen_classes
        aliases = {name: name for name in linen_classes}
        for statement in converter.module.body:
            if self._is_partial(statement):
                assign = statement.body[0]  # type: ignore[attr-defined]
                built = assign.value.args[0].value
                if isinstance(assign.targets[0].target, cst.Name) and isinstance(built, cst.Name) \
                        and built.value in linen_classes:
                    aliases[assign.targets[0].target.value] = built.value
        found: dict[str, int] = {}
        for index, statement in enumerate(converter.module.body):
            if not (isinstance(statement, cst.ClassDef) and statement.name.value in linen_classes) \
                    and not is_import(statement) and not self._is_partial(statement) \
                    and not (isinstance(statement, cst.FunctionDef) and self._factory_class(statement)):
                for name in _names_in(statement, set(aliases)):
                    found.setdefault(aliases[name], index)
        converter.users_outside = found
        return found

    def used_outside(self) -> dict[str, int]:
        """``users_outside`` with the first line that names each class."""
        module = self.converter.module
        found = self.users_outside()
        if not found:
            return {}
        lines, line = {}, 1 + len(module.header)  # the line of each statement that uses one (code is costly)
        for index, statement in enumerate(module.body[:max(found.values()) + 1]):
            lines[index] = line + len(statement.leading_lines)
            line += module.code_for_node(statement).count("\n")
        return {name: lines[index] for name, index in found.items()}

    def keep_classes_given_linen_layers(self) -> None:
        """``ResNet18Local = partial(ResNet, conv=nn.ConvLocal)``: a class a partial passes a Linen
        module class to stays Linen (an NNX class would build the Linen layer), unless the layer
        is one kept Linen through ``nnx.bridge.ToNNX`` (``constructs/linen_bridge.py``): the
        partial then passes the factory generated for it (``linen_bridge.bridge_partials``)."""
        env = self.converter.env
        for statement in self.converter.module.body:
            if not self._is_partial(statement):
                continue
            assign = statement.body[0]  # type: ignore[attr-defined]
            call = assign.value
            target = self.converter.env.code(assign.targets[0].target)
            for arg in call.args[1:]:
                member = env.linen_member(arg.value)
                if member and member[:1].isupper() and isinstance(call.args[0].value, cst.Name):
                    owner = call.args[0].value.value
                    why = f"`{target} = partial(..., {arg.keyword.value}=nn.{member})` passes a Linen module class"
                    try:
                        if owner in self.converter.linen_classes and handed_in_layer(
                                env, self.converter.linen_classes[owner], arg.keyword.value, arg.value):
                            self.converter.bridged_partials[statement] = owner
                            continue
                    except Unconvertible as error:
                        self.classes.keep_linen(owner, f"{why}: {error}")
                        continue
                    self.classes.keep_linen(owner, f"{why}, which an NNX class cannot build" + (
                        "" if member in LAYERS else f" (`nn.{member}` has no NNX equivalent)"))

    def _factory_class(self, function: cst.FunctionDef) -> Optional[str]:
        """``def model(latents): return VAE(latents=latents)``: the class a factory builds.
        Statements may come before its one ``return`` (big_vision's ``def Model(num_classes=None,
        *, variant=None, **kw)`` decodes the variant into ``kw``), and the construction may
        pass starred arguments (``return _Model(num_classes, **kw)``)."""
        line = _last_statement(function)
        params = function.params
        if line is None or function.decorators or params.posonly_params:
            return None
        if not (isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1
                and isinstance(line.body[0], cst.Return) and isinstance(line.body[0].value, cst.Call)):
            return None
        if sum(isinstance(node, cst.Return) for node in walk(function)) != 1:
            return None
        call = line.body[0].value
        if not (isinstance(call.func, cst.Name) and call.func.value in self.converter.linen_classes):
            return None
        before = [node for statement in function.body.body if statement is not line  # type: ignore[union-attr]
                  for node in walk(statement)]
        if any(isinstance(node, cst.Name) and node.value in self.converter.linen_classes for node in before):
            return None  # its other statements use the file's classes too: no plain factory
        if any(param.name.value == "rngs" or param.name.value.endswith("features")
               for param in (*params.params, *params.kwonly_params)):
            return None
        return call.func.value

    def _pass_through(self, function: cst.FunctionDef) -> cst.FunctionDef:
        """The factory takes the converted class's new parameters and passes them on:
        ``def model(latents, *, in_features: int, rngs: nnx.Rngs): return VAE(in_features, ..., rngs=rngs)``."""
        converted = self.classes.converted[self._factory_class(function)]  # type: ignore[index]
        passed = [*converted.size_params, *converted.layer_size_params]
        added = [f"{name}: int" for name in passed]
        if converted.uses_rngs:
            added.append(f"rngs: {self.converter.env.nnx}.Rngs")
        if not added:
            return function
        new_params = [cst.Param(cst.Name(text.partition(":")[0]), cst.Annotation(
            cst.parse_expression(text.partition(": ")[2]))) for text in added]
        params = function.params
        star = params.star_arg if isinstance(params.star_arg, cst.Param) else cst.ParamStar()  # ``*args`` stays
        kwonly = list(params.kwonly_params)
        if kwonly:  # the new ones after those the factory has, before its ``**kw``
            kwonly[-1] = kwonly[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        params = params.with_changes(star_arg=star, kwonly_params=[*kwonly, *new_params])
        statement = _last_statement(function)
        call = statement.body[0].value  # type: ignore[attr-defined]
        args = [cst.Arg(cst.Name(name)) for name in passed] + list(call.args)
        if converted.uses_rngs:
            args.append(cst.Arg(cst.Name("rngs"), keyword=cst.Name("rngs"),
                                equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))))
        args = [arg.with_changes(comma=cst.MaybeSentinel.DEFAULT) for arg in args]
        new_call = call.with_changes(args=args)
        new_return = statement.with_changes(body=[statement.body[0].with_changes(value=new_call)])  # type: ignore
        body = [new_return if s is statement else s for s in function.body.body]  # type: ignore[union-attr]
        return function.with_changes(params=params, body=function.body.with_changes(body=body))

    def factories(self) -> dict[str, str]:
        """Factory function -> the class it builds, for the fix description."""
        return {statement.name.value: self._factory_class(statement)  # type: ignore[misc]
                for statement in self.converter.module.body
                if isinstance(statement, cst.FunctionDef) and self._factory_class(statement)}

    def partials(self) -> dict[str, str]:
        """``ResNet18 = partial(ResNet, ...)`` -> ``ResNet``: names other files call to build a class."""
        return dict(alias for statement in self.converter.module.body
                    if (alias := partial_alias(statement, self.converter.env.resolve)) is not None)

    def _is_partial(self, statement: cst.CSTNode) -> bool:
        return partial_assignment(statement, self.converter.env.resolve) is not None


def _last_statement(function: cst.FunctionDef) -> Optional[cst.BaseStatement]:
    body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
    statements = [statement for statement in body if not is_docstring(statement)]
    return statements[-1] if statements else None


def partial_assignment(statement: cst.CSTNode, resolve: Callable[[cst.BaseExpression], Optional[str]]
                       ) -> Optional[cst.Assign]:
    """``ResNet18 = partial(ResNet, stage_sizes=[2, 2, 2, 2], block_cls=ResNetBlock)`` (the
    assignment; ``resolve``: how the file's names resolve), or None."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Assign)):
        return None
    value = statement.body[0].value
    if (isinstance(value, cst.Call) and resolve(value.func) in _PARTIAL
            and len(value.args) >= 1 and value.args[0].keyword is None
            and all(arg.keyword is not None and not arg.star for arg in value.args[1:])):
        return statement.body[0]
    return None


def partial_alias(statement: cst.CSTNode, resolve: Callable[[cst.BaseExpression], Optional[str]]
                  ) -> Optional[tuple[str, str]]:
    """(alias, class) for ``ResNet18 = partial(ResNet, ...)``, both plain names, or None."""
    assign = partial_assignment(statement, resolve)
    if assign is None:
        return None
    target, built = assign.targets[0].target, assign.value.args[0].value  # type: ignore[attr-defined]
    return (target.value, built.value) if isinstance(target, cst.Name) and isinstance(built, cst.Name) else None



def _names_in(node: cst.CSTNode, candidates: set[str]) -> list[str]:
    """The candidates named in ``node``, in order (not as an attribute: ``x.Net`` is not ``Net``)."""
    attributes = {id(child.attr) for child in walk(node) if isinstance(child, cst.Attribute)}
    found: list[str] = []
    for child in walk(node):
        if isinstance(child, cst.Name) and child.value in candidates and id(child) not in attributes \
                and child.value not in found:
            found.append(child.value)
    return found

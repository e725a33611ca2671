"""Converting one Linen Module class into an NNX Module class.

Dataclass fields become ``__init__`` parameters, ``setup()`` becomes
``__init__``, submodules created inline under ``@nn.compact`` become attributes
built in ``__init__`` (named by ``nnxlint.conversion.naming``), and every layer receives
the input size Linen inferred, found by following shapes through ``__call__``
(``nnxlint.conversion.shapes``).  The train/eval switch of ``__call__`` (``train``,
``deterministic``, ...) is removed: NNX layers carry it, set by
``model.train()`` / ``model.eval()``.  Anything the conversion cannot do
exactly raises ``Unconvertible`` with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import libcst as cst

from nnxlint import names
from nnxlint.flax_api import FLAX_LINEN, LINEN_MODULE
from nnxlint.conversion.linen_map import (
    ELEMENTWISE_FUNCTIONS, LAYERS, POOLING_FUNCTIONS, SAME_FUNCTIONS, VARIABLE_TYPES, LayerMapping,
    custom_variable_type,
)
from nnxlint.conversion.shapes import (
    Shape, Size, flatten, int_literal, int_tuple, string_literal, window_output,
)
from nnxlint.conversion.naming import nnx_attribute_name

LINEN_COMPACT = f"{FLAX_LINEN}.compact"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTEGER_ARITHMETIC = re.compile(r"[0-9 ()*+\-/]+")


class Unconvertible(Exception):
    """The reason a piece of Linen code gets no fix."""


@dataclass(frozen=True)
class Mode:
    """``__call__``'s train/eval parameter: its name, position and value in eval mode."""

    name: str
    index: int  # among the parameters after ``self``
    eval_value: bool
    default: Optional[bool] = None  # the parameter's default, when it has one


@dataclass
class InitParam:
    name: str
    annotation: Optional[str]
    default: Optional[str]  # source text


@dataclass
class ConvertedClass:
    name: str
    node: cst.ClassDef
    size_params: dict[str, int]  # input size parameter -> the __call__ argument it sizes
    fields: list[InitParam]
    output: Shape  # in the terms of the class's own ``__init__``
    mode: Optional[Mode]
    uses_rngs: bool
    # a layer keeps a constant train/eval flag, which model.train()/eval() would override
    constant_flags: bool = False


@dataclass
class FileEnv:
    """What a class conversion needs from the file around it."""

    module: cst.Module
    scope: names.Scope  # the module scope: import resolution
    nnx: str  # how the converted file spells flax.nnx
    linen_classes: dict[str, cst.ClassDef]
    # converts a user Linen class for the given input shapes (cached by the caller)
    convert_class: Callable[[str, Sequence[Shape]], ConvertedClass] = None  # type: ignore[assignment]
    # collections of ``self.variable`` other than params/batch_stats -> the Variable subclass defined for each
    custom_collections: dict[str, str] = field(default_factory=dict)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def resolve(self, node: cst.BaseExpression) -> Optional[str]:
        return names.resolve(self.scope, node)

    def linen_member(self, node: cst.BaseExpression) -> Optional[str]:
        qualified = self.resolve(node)
        if qualified and qualified.startswith(FLAX_LINEN + "."):
            return qualified[len(FLAX_LINEN) + 1:]
        return None

    def nnx_function(self, node: cst.BaseExpression) -> Optional[str]:
        """``nnx.relu`` for ``nn.relu`` (and ``nnx.initializers.x`` for
        ``nn.initializers.x``): the same functions under flax.nnx."""
        member = self.linen_member(node)
        if member in SAME_FUNCTIONS:
            return f"{self.nnx}.{member}"
        if member and member.startswith("initializers."):
            return f"{self.nnx}.{member}"
        return None


def substitute(code: str, values: dict[str, str]) -> Size:
    """``code`` with each name in ``values`` replaced by its text, folded to a
    number when only integer arithmetic is left."""
    expression = cst.parse_expression(code)

    class Replace(cst.CSTTransformer):
        def leave_Name(self, original_node, updated_node):
            if original_node.value in values:
                return cst.parse_expression(f"({values[original_node.value]})")
            return updated_node

    text = cst.Module([]).code_for_node(expression.visit(Replace()))
    if _INTEGER_ARITHMETIC.fullmatch(text) and "/" not in text.replace("//", ""):
        value = eval(text, {"__builtins__": {}})  # digits and operators only
        return Size.number(value)
    return Size(_strip_parens(text))


def _strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")") and _IDENTIFIER.fullmatch(text[1:-1]):
        text = text[1:-1]
    return text


def _keyword(arg: cst.Arg) -> Optional[str]:
    return arg.keyword.value if arg.keyword is not None else None


def _is_self_attribute(node: cst.BaseExpression) -> Optional[str]:
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
        return node.attr.value
    return None


def _function_params(function: cst.FunctionDef) -> list[cst.Param]:
    params = function.params
    if params.star_arg not in (None, cst.MaybeSentinel.DEFAULT) or params.star_kwarg or params.posonly_params:
        raise Unconvertible(f"`{function.name.value}` takes *args/**kwargs or positional-only parameters")
    return list(params.params) + list(params.kwonly_params)


@dataclass
class _Slot:
    """A submodule: where Linen creates it and what the NNX ``__init__`` builds."""

    attribute: str
    construction: cst.Call
    init_code: Optional[str] = None  # set once the input size is known


@dataclass
class _Layer:
    """What a construction call creates: a Flax layer or a user Linen class."""

    mapping: Optional[LayerMapping]
    user_class: Optional[str]
    sequential: bool = False  # ``nn.Sequential([...])``
    rnn: bool = False  # ``nn.RNN(cell)``


class ClassConverter:
    """Converts one Linen class, given the shapes of its ``__call__`` inputs."""

    def __init__(self, env: FileEnv, node: cst.ClassDef, inputs: Sequence[Shape]) -> None:
        self.env = env
        self.node = node
        self.inputs = inputs
        self.fields: list[InitParam] = []
        self.field_names: set[str] = set()
        self.slots: dict[str, _Slot] = {}
        self.slot_order: list[str] = []
        self.init_lines: list[str] = []  # setup statements that are not submodules, in order
        self.params: dict[str, str] = {}  # self.param attributes -> their NNX creation
        self.variables: dict[str, str] = {}  # self.variable attributes -> their NNX creation
        self.auto_counters: dict[str, int] = {}
        self.size_params: dict[str, int] = {}
        self.mode: Optional[Mode] = None
        self.uses_rngs = False
        self.constant_flags = False
        self._call_param_index: dict[str, int] = {}  # __call__ parameters after self
        self._call_param_defaults: dict[str, bool] = {}
        self.other_methods: dict[str, cst.FunctionDef] = {}
        self.followed_methods: dict[str, cst.FunctionDef] = {}  # converted while following __call__
        self._compact = False
        self._output_shape: Shape = None
        self.mode_consumed = 0  # reads of the mode parameter that the conversion removes

    # -- entry ---------------------------------------------------------------
    def run(self) -> ConvertedClass:
        node = self.node
        if node.decorators:
            raise Unconvertible("decorated Linen classes are not converted")
        if len(node.bases) != 1 or self.env.resolve(node.bases[0].value) != LINEN_MODULE or node.keywords:
            raise Unconvertible("only classes that subclass `nn.Module` directly are converted")
        body = list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
        methods: dict[str, cst.FunctionDef] = {}
        for statement in body:
            if isinstance(statement, cst.FunctionDef):
                methods[statement.name.value] = statement
            elif self._is_field(statement):
                self._add_field(statement)  # type: ignore[arg-type]
            elif not self._is_docstring(statement):
                raise Unconvertible("class bodies with statements other than fields and methods are not converted")
        if "__call__" not in methods:
            raise Unconvertible("the class has no `__call__`")
        overridden = sorted(set(methods) & _LINEN_MODULE_API)
        if overridden:
            raise Unconvertible(f"the class overrides Linen's `{overridden[0]}`")
        for name, method in methods.items():
            compact = any(self.env.resolve(d.decorator) == LINEN_COMPACT for d in method.decorators)
            if compact and name != "__call__":
                raise Unconvertible(f"`@nn.compact` on `{name}`: only a compact `__call__` is converted")
            if method.decorators and not compact:
                raise Unconvertible(f"decorated method `{name}` is not converted")
        if "setup" in methods:
            self._read_setup(methods["setup"])
        self.other_methods = {name: method for name, method in methods.items() if name not in ("setup", "__call__")}
        call = self._convert_call(methods["__call__"])
        converted_methods = {"__call__": call}
        for name, method in self.other_methods.items():
            converted_methods[name] = self.followed_methods.get(name) or self._convert_other_method(method)
        for attribute in self.slot_order:
            if self.slots[attribute].init_code is None:
                raise Unconvertible(f"`self.{attribute}` is never called in `__call__`: its input size is unknown")
        init = self._build_init(converted_methods)
        # __init__ takes the place of the first field (or of the first method,
        # setup included); a method right after it gets a blank line
        new_body: list[cst.BaseStatement] = []
        init_index: Optional[int] = None
        for statement in body:
            if self._is_docstring(statement):
                new_body.append(statement)
                continue
            if init_index is None:
                init_index = len(new_body)
                new_body.append(init.with_changes(leading_lines=statement.leading_lines))
            if isinstance(statement, cst.FunctionDef) and statement.name.value != "setup":
                method = converted_methods[statement.name.value]
                if len(new_body) == init_index + 1 and not method.leading_lines:
                    method = method.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
                new_body.append(method)
        base = cst.Arg(cst.parse_expression(f"{self.env.nnx}.Module"))
        new_node = node.with_changes(bases=[base], body=node.body.with_changes(body=new_body))
        return ConvertedClass(node.name.value, new_node, self.size_params, self.fields,
                              self._output_shape, self.mode, self.uses_rngs, self.constant_flags)

    # -- fields and setup --------------------------------------------------
    @staticmethod
    def _is_docstring(statement: cst.CSTNode) -> bool:
        return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.Expr)
                and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))

    @staticmethod
    def _is_field(statement: cst.CSTNode) -> bool:
        return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.AnnAssign)
                and isinstance(statement.body[0].target, cst.Name))

    def _add_field(self, statement: cst.SimpleStatementLine) -> None:
        assign = statement.body[0]
        assert isinstance(assign, cst.AnnAssign) and isinstance(assign.target, cst.Name)
        annotation = self.env.code(assign.annotation.annotation)
        if "ClassVar" in annotation or "InitVar" in annotation:
            raise Unconvertible(f"field `{assign.target.value}: {annotation}` is not converted")
        default = None
        if assign.value is not None:
            if isinstance(assign.value, cst.Call) and self.env.resolve(assign.value.func) in (
                    "dataclasses.field", "flax.struct.field"):
                raise Unconvertible(f"field `{assign.target.value}` uses `field(...)`")
            default = self._init_code(assign.value, {})
        self.fields.append(InitParam(assign.target.value, annotation, default))
        self.field_names.add(assign.target.value)

    def _read_setup(self, setup: cst.FunctionDef) -> None:
        if len(_function_params(setup)) != 1:
            raise Unconvertible("`setup` takes arguments")
        for statement in setup.body.body:  # type: ignore[union-attr]
            if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                    and isinstance(statement.body[0], cst.Assign) and len(statement.body[0].targets) == 1):
                raise Unconvertible("`setup` has statements other than `self.x = ...` assignments")
            assign = statement.body[0]
            attribute = _is_self_attribute(assign.targets[0].target)
            if attribute is None:
                raise Unconvertible("`setup` assigns something other than `self.x`")
            value = assign.value
            if isinstance(value, cst.Call) and self._layer(value.func) is not None:
                self._add_slot(attribute, value)
            elif isinstance(value, cst.Call) and self._is_self_call(value.func, "param"):
                self._add_param(attribute, value, {})
            elif isinstance(value, cst.Call) and self._is_self_call(value.func, "variable"):
                if self._add_variable(value, {}) != attribute:
                    raise Unconvertible(f"`self.{attribute} = self.variable(...)` under another name")
            else:
                self.init_lines.append(f"self.{attribute} = {self._init_code(value, {})}")
                self.field_names.add(attribute)  # later reads of self.x translate to x's text

    def _add_slot(self, attribute: str, construction: cst.Call) -> _Slot:
        if attribute in self.slots:
            raise Unconvertible(f"submodule name `{attribute}` is used twice")
        for arg in construction.args:
            if _keyword(arg) == "parent":
                raise Unconvertible("`parent=` is not converted")
        slot = _Slot(attribute, construction)
        self.slots[attribute] = slot
        self.slot_order.append(attribute)
        return slot

    def _is_self_call(self, func: cst.BaseExpression, method: str) -> bool:
        return _is_self_attribute(func) == method

    def _add_param(self, attribute: str, call: cst.Call, shapes: dict[str, Shape]) -> None:
        """``self.param('w', init, *args)`` -> ``self.w = nnx.Param(init(rngs.params(), *args))``."""
        args = list(call.args)
        if len(args) < 2 or any(_keyword(arg) for arg in args) or any(arg.star for arg in args):
            raise Unconvertible("`self.param` with keyword or starred arguments is not converted")
        name = string_literal(args[0].value)
        if name is None or not _IDENTIFIER.fullmatch(name):
            raise Unconvertible("`self.param` needs a literal name that is an identifier")
        if attribute != name:
            raise Unconvertible(f"`self.param({name!r}, ...)` stored under another name (`{attribute}`)")
        if name in self.params or name in self.slots or name in self.variables:
            raise Unconvertible(f"`{name}` is created twice")
        init = self._init_code(args[1].value, shapes)
        rest = [self._init_code(arg.value, shapes) for arg in args[2:]]
        self.params[name] = f"self.{name} = {self.env.nnx}.Param({init}({', '.join(['rngs.params()'] + rest)}))"
        self.uses_rngs = True

    def _add_variable(self, call: cst.Call, shapes: dict[str, Shape]) -> str:
        """``self.variable('batch_stats', 'mean', init, *args)`` ->
        ``self.mean = nnx.BatchStat(init(*args))`` (a collection of the user's
        own gets an ``nnx.Variable`` subclass); returns the attribute."""
        args = list(call.args)
        if len(args) < 3 or any(_keyword(arg) or arg.star for arg in args):
            raise Unconvertible("`self.variable` needs a collection, a name and an init function, "
                                "without keyword or starred arguments")
        collection, name = string_literal(args[0].value), string_literal(args[1].value)
        if collection is None or not _IDENTIFIER.fullmatch(collection):
            raise Unconvertible("`self.variable` needs a literal collection name that is an identifier")
        if name is None or not _IDENTIFIER.fullmatch(name):
            raise Unconvertible("`self.variable` needs a literal name that is an identifier")
        # Linen keeps each collection apart; NNX attributes share one namespace
        if name in self.params or name in self.slots or name in self.variables or name in self.field_names:
            raise Unconvertible(f"`{name}` is created twice")
        init = self._init_code(args[2].value, shapes)
        init_args = [self._init_code(arg.value, shapes) for arg in args[3:]]
        if collection in VARIABLE_TYPES:
            variable_type = f"{self.env.nnx}.{VARIABLE_TYPES[collection]}"
        else:
            variable_type = custom_variable_type(collection)
            self.env.custom_collections[collection] = variable_type
            if list(self.env.custom_collections.values()).count(variable_type) > 1:  # ``ema_stats``, ``ema_Stats``
                raise Unconvertible(f"two collections would share the NNX Variable type `{variable_type}`")
        self.variables[name] = f"self.{name} = {variable_type}({init}({', '.join(init_args)}))"
        return name

    # -- expressions in __init__ terms ---------------------------------------
    def _init_code(self, node: cst.BaseExpression, shapes: dict[str, Shape]) -> str:
        """``node`` rewritten for ``__init__``: ``self.field`` -> ``field``,
        ``x.shape[-1]`` -> its size, Linen functions -> NNX ones."""
        converter = self
        sizes: dict[int, Size] = {}

        class Translate(cst.CSTTransformer):
            def leave_Attribute(self, original_node, updated_node):
                attribute = _is_self_attribute(original_node)
                if attribute is not None:
                    if attribute not in converter.field_names:
                        raise Unconvertible(f"`self.{attribute}` is used where the NNX `__init__` needs it")
                    return cst.Name(attribute)
                return converter._nnx_reference(original_node, updated_node)

            def leave_Name(self, original_node, updated_node):
                if original_node.value in shapes:
                    raise Unconvertible(f"a layer argument depends on `{original_node.value}`, "
                                        "a value computed in `__call__`")
                return converter._nnx_reference(original_node, updated_node)

            def visit_Call(self, node: cst.Call) -> None:
                if converter._layer(node.func) is not None:
                    raise Unconvertible("a submodule inside a list, dict or expression is not converted")

            def visit_Subscript(self, node) -> bool:
                size = converter._shape_axis(node, shapes)
                if size is not None:
                    sizes[id(node)] = size
                return size is None  # ``x.shape[-1]`` reads no value of ``x``

            def leave_Subscript(self, original_node, updated_node):
                if id(original_node) in sizes:
                    return cst.parse_expression(sizes[id(original_node)].operand())
                return updated_node

        return self.env.code(node.visit(Translate()))

    def _nnx_reference(self, original, updated):
        replacement = self.env.nnx_function(original)
        if replacement is not None:
            return cst.parse_expression(replacement)
        member = self.env.linen_member(original)
        if member is not None and member not in LAYERS and member not in _CONVERTED_ELSEWHERE and "." not in member:
            raise Unconvertible(f"`nn.{member}` has no conversion")
        return updated

    def _shape_axis(self, node: cst.Subscript, shapes: dict[str, Shape]) -> Optional[Size]:
        """The size for ``x.shape[i]`` when ``x``'s shape is known."""
        value = node.value
        if not (isinstance(value, cst.Attribute) and value.attr.value == "shape"
                and isinstance(value.value, cst.Name) and len(node.slice) == 1
                and isinstance(node.slice[0].slice, cst.Index)):
            return None
        shape = shapes.get(value.value.value)
        index = int_literal(node.slice[0].slice.value)
        if shape is None or index is None or not -len(shape) <= index < len(shape):
            return None
        return shape[index]

    # -- layers ----------------------------------------------------------------
    def _layer(self, func: cst.BaseExpression) -> Optional[_Layer]:
        member = self.env.linen_member(func)
        if member is not None:
            if member in LAYERS:
                return _Layer(LAYERS[member], None)
            if member == "Sequential":
                return _Layer(None, None, sequential=True)
            if member == "RNN":
                return _Layer(None, None, rnn=True)
            if member[:1].isupper():
                raise Unconvertible(f"`nn.{member}` has no conversion yet")
            return None
        if isinstance(func, cst.Name) and func.value in self.env.linen_classes:
            binding = self.env.scope.lookup(func.value)
            if binding is not None and binding.node is self.env.linen_classes[func.value]:
                return _Layer(None, func.value)
        return None

    def _construction_args(self, construction: cst.Call, mapping: LayerMapping,
                           shapes: dict[str, Shape]) -> tuple[dict[str, cst.BaseExpression], list[str]]:
        """Linen constructor arguments by Linen name, and which were positional."""
        values: dict[str, cst.BaseExpression] = {}
        positional: list[str] = []
        for index, arg in enumerate(construction.args):
            if arg.star:
                raise Unconvertible(f"starred arguments to `nn.{mapping.linen}`")
            keyword = _keyword(arg)
            if keyword is None:
                if index >= len(mapping.linen_positional):
                    raise Unconvertible(f"too many positional arguments to `nn.{mapping.linen}`")
                keyword = mapping.linen_positional[index]
                positional.append(keyword)
            values[keyword] = arg.value
        return values, positional

    def _layer_init(self, slot: _Slot, mapping: LayerMapping, input_size: Optional[Size],
                    shapes: dict[str, Shape]) -> str:
        values, positional = self._construction_args(slot.construction, mapping, shapes)
        values.pop("name", None)
        for keyword in values:
            if keyword in mapping.no_equivalent:
                raise Unconvertible(f"`nn.{mapping.linen}({keyword}=...)` has no NNX equivalent")
        flag = values.pop(mapping.mode_flag, None) if mapping.mode_flag else None
        if flag is not None:
            constant = self._mode_use(flag, True)
            if constant is None:
                self.mode_consumed += 1
            else:
                values[mapping.mode_flag] = flag  # a constant stays as it was
                self.constant_flags = True
        for keyword in ("axis", "feature_axes"):  # the input size is read from the last axis
            if mapping.linen == "DenseGeneral":
                break  # its contracted axes give its input size (``_input_size``)
            if keyword in values and int_literal(values[keyword]) != -1 and mapping.input_size:
                raise Unconvertible(f"`nn.{mapping.linen}({keyword}=...)` on an axis other than the last")
        nnx_values: dict[str, str] = {}
        nnx_positional: set[str] = set()
        if mapping.input_size:
            if input_size is None:
                raise Unconvertible(f"the input size of `{slot.attribute}` ({mapping.linen}) "
                                    "cannot be determined statically")
            nnx_values[mapping.input_size] = input_size.code
            nnx_positional.add(mapping.input_size)
        for linen_name, value in values.items():
            nnx_name = mapping.renamed.get(linen_name, linen_name)
            nnx_values[nnx_name] = self._init_code(value, shapes)
            if linen_name in positional or linen_name == mapping.output_size:
                nnx_positional.add(nnx_name)
        for name, code in mapping.added.items():
            nnx_values.setdefault(name, code)
        sizes = [mapping.input_size, mapping.renamed.get(mapping.output_size or "", mapping.output_size)]
        last_size = max((mapping.nnx_positional.index(n) for n in sizes if n in mapping.nnx_positional), default=-1)
        nnx_positional.update(mapping.nnx_positional[:last_size + 1])  # ``(num_heads, in_features, ...)``
        parts: list[str] = []
        for name in mapping.nnx_positional:  # positional while contiguous
            if name not in nnx_values or name not in nnx_positional:
                break
            parts.append(nnx_values.pop(name))
        parts += [f"{name}={code}" for name, code in nnx_values.items()]
        parts.append("rngs=rngs")
        self.uses_rngs = True
        return f"{self.env.nnx}.{mapping.nnx}({', '.join(parts)})"

    def _layer_output(self, mapping: LayerMapping, slot: _Slot, input_shape: Shape,
                      shapes: dict[str, Shape]) -> Shape:
        if input_shape is None:
            return None
        values, _ = self._construction_args(slot.construction, mapping, shapes)
        if mapping.linen == "Embed":
            return input_shape + (self._size_of(values["features"], shapes),)
        if mapping.linen == "DenseGeneral":  # the contracted axes give way to the features
            return input_shape[:len(input_shape) - len(self._contracted_axes(values))] + self._features(values)
        last: Optional[Size] = input_shape[-1]
        if mapping.output_size and mapping.output_size in values:
            last = self._size_of(values[mapping.output_size], shapes)
        leading = input_shape[:-1]
        if mapping.linen in ("Conv",):
            leading = self._conv_spatial(values, leading)
        elif mapping.linen in ("ConvTranspose", "LSTMCell", "GRUCell"):
            return None
        return tuple(leading) + (last,)

    def _input_size(self, mapping: LayerMapping, slot: _Slot, shape: Shape,
                    shapes: dict[str, Shape]) -> Optional[Size]:
        """The size a layer reads from its input: the last axis, or DenseGeneral's
        contracted axes (their sizes as a tuple when there are several)."""
        if not shape:
            return None
        if mapping.linen != "DenseGeneral":
            return shape[-1]
        axes = self._contracted_axes(self._construction_args(slot.construction, mapping, shapes)[0])
        if len(axes) >= len(shape):
            raise Unconvertible(f"`{slot.attribute}` (DenseGeneral) contracts the batch axis")
        sizes = [shape[axis] for axis in axes]
        if any(size is None for size in sizes):
            return None
        return sizes[0] if len(sizes) == 1 else Size(f"({', '.join(size.code for size in sizes)})")  # type: ignore

    @staticmethod
    def _contracted_axes(values: dict[str, cst.BaseExpression]) -> tuple[int, ...]:
        """DenseGeneral's ``axis``: the last axes, counted from the end."""
        node = values.get("axis")
        axes = (-1,) if node is None else int_tuple(node, 1) if int_literal(node) is not None else int_tuple(node, 0)
        if not axes or tuple(sorted(axes)) != tuple(range(-len(axes), 0)):
            raise Unconvertible("`nn.DenseGeneral(axis=...)` other than the last axes counted from the end "
                                "(`-1`, `(-2, -1)`, ...)")
        return axes

    def _features(self, values: dict[str, cst.BaseExpression]) -> tuple[Size, ...]:
        """DenseGeneral's ``features``: an int or a tuple of ints, known to be ints
        (a field holding a tuple would pass for one size)."""
        node = values.get("features")
        elements = [element.value for element in node.elements] if isinstance(node, (cst.Tuple, cst.List)) \
            else [node]
        sizes = []
        for element in elements:
            attribute = _is_self_attribute(element) if element is not None else None
            if element is not None and int_literal(element) is not None:
                sizes.append(Size.number(int_literal(element)))  # type: ignore[arg-type]
            elif attribute and any(f.name == attribute and f.annotation == "int" for f in self.fields):
                sizes.append(Size(attribute))
            else:
                raise Unconvertible("`nn.DenseGeneral(features=...)` that is not an int or a tuple of ints "
                                    "(literals or `int` fields)")
        return tuple(sizes)

    def _size_of(self, node: cst.BaseExpression, shapes: dict[str, Shape]) -> Size:
        code = self._init_code(node, shapes)
        value = int_literal(node)
        return Size(code, value)

    @staticmethod
    def _conv_spatial(values: dict[str, cst.BaseExpression], leading: tuple) -> tuple:
        """The axes before the features after a Conv: the kernel's rank decides how
        many of the last ones are convolved (an int kernel size is a 1-D kernel),
        the ones before them are batch axes."""
        kernel_node = values.get("kernel_size")
        kernel = int_tuple(kernel_node, 1) if int_literal(kernel_node or cst.Name("x")) is not None \
            else int_tuple(kernel_node, 0)
        if kernel is None or not 0 < len(kernel) < len(leading):
            return (None,) * len(leading)
        rank = len(kernel)
        strides = int_tuple(values.get("strides", cst.Integer("1")), rank)
        padding = string_literal(values.get("padding", cst.SimpleString("'SAME'")))
        batch, spatial = leading[:-rank], leading[-rank:]
        if strides is None or len(strides) != rank or padding is None or any(
                name in values for name in ("input_dilation", "kernel_dilation")):
            return batch + (None,) * rank
        return batch + tuple(window_output(size, k, s, padding) for size, k, s in zip(spatial, kernel, strides))

    # -- mode flags ------------------------------------------------------------
    def _mode_use(self, node: cst.BaseExpression, eval_value: bool) -> Optional[bool]:
        """Records ``node`` as a use of the mode parameter that must be ``eval_value``
        in eval mode; returns the constant when ``node`` is a literal True/False."""
        negated = False
        while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            negated, node = not negated, node.expression
        if isinstance(node, cst.Name) and node.value in ("True", "False"):
            return (node.value == "True") != negated
        if not (isinstance(node, cst.Name) and node.value in self._call_param_index):
            raise Unconvertible("a train/eval flag that is not a `__call__` argument (or its `not`) "
                                "is not converted")
        mode = Mode(node.value, self._call_param_index[node.value], eval_value != negated,
                    self._call_param_defaults.get(node.value))
        if self.mode is not None and self.mode != mode:
            raise Unconvertible("the train/eval flags do not follow one `__call__` argument consistently")
        self.mode = mode
        return None

    # -- __call__ ----------------------------------------------------------------
    def _convert_call(self, function: cst.FunctionDef) -> cst.FunctionDef:
        params = _function_params(function)[1:]
        self._call_param_index = {param.name.value: index for index, param in enumerate(params)}
        self._call_param_defaults = {param.name.value: param.default.value == "True" for param in params
                                     if isinstance(param.default, cst.Name)
                                     and param.default.value in ("True", "False")}
        shapes: dict[str, Shape] = {}
        for index, param in enumerate(params):
            shape = self.inputs[index] if index < len(self.inputs) else None
            shapes[param.name.value] = self._inside_shape(param.name.value, index, shape)
        self._compact = any(self.env.resolve(d.decorator) == LINEN_COMPACT for d in function.decorators)
        visitor = _CallRewriter(self, shapes)
        new_function = function.with_changes(body=function.body.visit(visitor), decorators=[])
        self._output_shape = visitor.output
        if self.mode is not None:
            if visitor.mode_reads.get(self.mode.name, 0) != self.mode_consumed:
                raise Unconvertible(f"`{self.mode.name}` is used for more than the train/eval switch")
            new_function = _drop_param(new_function, self.mode.name)
        return new_function

    def _inside_shape(self, name: str, index: int, shape: Shape) -> Shape:
        """The caller's shape as seen inside: batch unknown, the feature axis a
        new ``__init__`` parameter, the other axes only when they are numbers."""
        if not shape:
            return None
        parameter = size_name(name, index)
        if parameter in self.field_names:
            raise Unconvertible(f"a field is named `{parameter}`, the name the input size parameter needs")
        middle = tuple(axis if axis is not None and axis.value is not None else None for axis in shape[1:-1])
        last = Size(parameter) if len(shape) > 1 else None
        return (None,) + middle + ((last,) if len(shape) > 1 else ())

    def _convert_other_method(self, method: cst.FunctionDef) -> cst.FunctionDef:
        class Check(cst.CSTVisitor):
            def visit_Call(inner, node: cst.Call) -> None:
                if self._layer(node.func) is not None or self._is_self_call(node.func, "param"):
                    raise Unconvertible(f"`{method.name.value}` creates submodules or parameters")
        method.visit(Check())
        return method.visit(_LinenFunctions(self))  # type: ignore[return-value]

    # -- __init__ ----------------------------------------------------------------
    def _build_init(self, methods: dict[str, cst.FunctionDef]) -> cst.FunctionDef:
        read_fields = set()

        class Reads(cst.CSTVisitor):
            def visit_Attribute(inner, node: cst.Attribute) -> None:
                attribute = _is_self_attribute(node)
                if attribute is not None:
                    read_fields.add(attribute)

        for method in methods.values():
            method.visit(Reads())
        known = self.field_names | set(self.slots) | set(self.params) | set(self.variables) | set(methods)
        unknown = sorted(read_fields - known)
        if unknown:  # Linen's own API (`self.is_initializing()`, `self.scope`, ...) has no NNX twin
            raise Unconvertible(f"`self.{unknown[0]}` is Linen Module API the conversion does not know")
        lines = [f"self.{f.name} = {f.name}" for f in self.fields if f.name in read_fields]
        lines += self.init_lines
        lines += [self.slots[attribute].init_code for attribute in self.slot_order]  # type: ignore[misc]
        lines += list(self.params.values())
        lines += list(self.variables.values())
        used_text = "\n".join(lines)
        self.size_params = {name: index for name, index in self._size_names().items()
                            if re.search(rf"\b{name}\b", used_text)}
        signature = ["self"] + [f"{name}: int" for name in self.size_params]
        for param in self.fields:
            text = param.name + (f": {param.annotation}" if param.annotation else "")
            signature.append(text + (f" = {param.default}" if param.default is not None else ""))
        if self.uses_rngs:
            signature += ["*", f"rngs: {self.env.nnx}.Rngs"]
        indent = self.env.module.default_indent
        newline = self.env.module.default_newline
        body = "".join(f"{indent}{line}{newline}" for line in lines) or f"{indent}pass{newline}"
        text = f"def __init__({', '.join(signature)}):{newline}{body}"
        return cst.parse_statement(text, config=self.env.module.config_for_parsing)  # type: ignore[return-value]

    def _size_names(self) -> dict[str, int]:
        return {size_name(name, index): index for name, index in self._call_param_index.items()}

    # -- called by the rewriter ----------------------------------------------
    def construct(self, construction: cst.Call, attribute: Optional[str]) -> _Slot:
        """An inline ``@nn.compact`` construction becomes an attribute."""
        layer = self._layer(construction.func)
        assert layer is not None
        given = next((arg.value for arg in construction.args if _keyword(arg) == "name"), None)
        if given is not None:
            name = string_literal(given)
            if name is None or not _IDENTIFIER.fullmatch(name):
                raise Unconvertible("`name=` must be a literal identifier")
            attribute = name
        else:
            type_name = layer.mapping.linen if layer.mapping else layer.user_class
            count = self.auto_counters.get(type_name, 0)  # type: ignore[arg-type]
            self.auto_counters[type_name] = count + 1  # type: ignore[index]
            attribute = nnx_attribute_name(f"{type_name}_{count}")
        if attribute in self.field_names or attribute in self.params or attribute in self.variables:
            raise Unconvertible(f"the submodule name `{attribute}` collides with a field")
        return self._add_slot(attribute, construction)

    def call_slot(self, slot: _Slot, inputs: list[Shape], shapes: dict[str, Shape]) -> tuple[Shape, Optional[Mode]]:
        """Fixes the slot's NNX construction from the shapes it is called with;
        returns the output shape and, for user classes, the child's mode."""
        layer = self._layer(slot.construction.func)
        assert layer is not None
        first = inputs[0] if inputs else None
        mode = None
        if layer.mapping is not None:
            input_size = self._input_size(layer.mapping, slot, first, shapes)
            code = self._layer_init(slot, layer.mapping, input_size, shapes)
            output = self._layer_output(layer.mapping, slot, first, shapes)
        elif layer.sequential:
            code, output = self._sequential_init(slot, first, shapes)
        elif layer.rnn:
            code, output = self._rnn_init(slot, first, shapes)
        else:
            code, output, mode = self._child_init(slot, layer.user_class, inputs, shapes)  # type: ignore[arg-type]
        if slot.init_code is not None and slot.init_code != f"self.{slot.attribute} = {code}":
            raise Unconvertible(f"`self.{slot.attribute}` is called with inputs of different sizes")
        slot.init_code = f"self.{slot.attribute} = {code}"
        return output, mode

    def _rnn_init(self, slot: _Slot, sequence: Shape, shapes: dict[str, Shape]) -> tuple[str, Shape]:
        """``self.rnn = nn.RNN(nn.LSTMCell(16))`` in ``setup`` -> ``nnx.RNN(nnx.LSTMCell(d, 16, rngs=rngs))``:
        Linen names the cell ``rnn/cell``, as the NNX RNN holds it."""
        cell = rnn_cell(slot.construction, self.env)
        part = _Slot(f"{slot.attribute}.cell", cell)
        self.call_slot(part, [sequence], shapes)
        return f"{self.env.nnx}.RNN({part.init_code.partition(' = ')[2]})", \
            self.rnn_output(cell, sequence, shapes)  # type: ignore[union-attr]

    def rnn_output(self, cell: cst.Call, sequence: Shape, shapes: dict[str, Shape]) -> Shape:
        """The hidden states an RNN of ``cell`` returns: the cell's features on the last axis."""
        if sequence is None:
            return None
        mapping = LAYERS[self.env.linen_member(cell.func)]  # type: ignore[index]
        features = self._construction_args(cell, mapping, shapes)[0]["features"]
        return sequence[:-1] + (self._size_of(features, shapes),)

    def _sequential_init(self, slot: _Slot, shape: Shape, shapes: dict[str, Shape]) -> tuple[str, Shape]:
        """``nn.Sequential([nn.Dense(8), nn.relu, ...])`` -> ``nnx.Sequential(nnx.Linear(d, 8, ...), nnx.relu, ...)``:
        Linen names the layers ``layers_0``, ``layers_2``, the ``nnx.List`` entries of the NNX Sequential."""
        parts = []
        for index, element in enumerate(sequence_elements(slot.construction)):
            if isinstance(element, cst.Call) and self._layer(element.func) is not None:
                part = _Slot(f"{slot.attribute}.layers[{index}]", element)
                shape, mode = self.call_slot(part, [shape], shapes)
                if mode is not None:
                    raise Unconvertible("a module with a train/eval argument inside `nn.Sequential`")
                parts.append(part.init_code.partition(" = ")[2])  # type: ignore[union-attr]
            elif self.env.nnx_function(element) is not None:
                parts.append(self.env.nnx_function(element))  # type: ignore[arg-type]
                member = self.env.linen_member(element)
                shape = shape if member in ELEMENTWISE_FUNCTIONS else None
            else:
                raise Unconvertible("`nn.Sequential` with elements other than layers and Linen functions")
        return f"{self.env.nnx}.Sequential({', '.join(parts)})", shape

    def _child_init(self, slot: _Slot, class_name: str, inputs: list[Shape],
                    shapes: dict[str, Shape]) -> tuple[str, Shape, Optional[Mode]]:
        child = self.env.convert_class(class_name, inputs)
        self.constant_flags |= child.constant_flags
        args = []
        values: dict[str, str] = {}
        for parameter, size in input_sizes(child, inputs, f"`{slot.attribute}` ({class_name})").items():
            args.append(size.code)
            values[parameter] = size.code
        field_values = {f.name: f.default for f in child.fields}
        for index, arg in enumerate(slot.construction.args):
            keyword = _keyword(arg)
            if keyword == "name":
                continue
            if arg.star:
                raise Unconvertible(f"starred arguments to `{class_name}`")
            code = self._init_code(arg.value, shapes)
            if keyword is None:
                if index >= len(child.fields):
                    raise Unconvertible(f"too many arguments to `{class_name}`")
                field_values[child.fields[index].name] = code
                args.append(code)
            else:
                field_values[keyword] = code
                args.append(f"{keyword}={code}")
        if child.uses_rngs:
            args.append("rngs=rngs")
            self.uses_rngs = True
        values.update({name: code for name, code in field_values.items() if code is not None})
        output = None
        if child.output is not None:
            output = tuple(None if axis is None else substitute(axis.code, values) for axis in child.output)
        return f"{class_name}({', '.join(args)})", output, child.mode


# Linen Module methods a subclass may override; their NNX meaning differs or is absent.
_LINEN_MODULE_API = frozenset({
    "__init__", "__post_init__", "param", "variable", "sow", "make_rng", "init", "apply", "bind", "unbind",
    "init_with_output", "is_initializing", "is_mutable_collection", "put_variable", "get_variable",
    "has_variable", "has_rng", "perturb", "tabulate", "lazy_init", "__getattr__", "__setattr__",
})
_ELEMENTWISE_OPERATORS = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.Power)
# NNX's GRUCell fuses its gate kernels (``dense_i``, ``dense_h``): Linen's per-gate ones do not load into it.
RNN_CELLS = ("LSTMCell",)
# Linen names that the construction or call around them converts.
_CONVERTED_ELSEWHERE = ("compact", "initializers", "Sequential", "RNN")


def _is_false(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "False"


def sequence_elements(construction: cst.Call) -> list[cst.BaseExpression]:
    """The layers of ``nn.Sequential([...])``, given as a list or tuple literal."""
    layers = [arg.value for arg in construction.args if arg.keyword is None or arg.keyword.value == "layers"]
    if len(layers) != 1 or not isinstance(layers[0], (cst.List, cst.Tuple)) or any(
            arg.keyword is not None and arg.keyword.value not in ("layers", "name") for arg in construction.args):
        raise Unconvertible("`nn.Sequential` without a literal list of layers is not converted")
    return [element.value for element in layers[0].elements]


def rnn_cell(construction: cst.Call, env: FileEnv) -> cst.Call:
    """The cell of ``nn.RNN(nn.LSTMCell(...))``, created in place; other RNN options are not converted."""
    cells = [arg.value for arg in construction.args if arg.keyword is None or arg.keyword.value == "cell"]
    if len(cells) != 1 or not isinstance(cells[0], cst.Call) or any(
            arg.keyword is not None and arg.keyword.value not in ("cell", "name") for arg in construction.args):
        raise Unconvertible("`nn.RNN` with options or a cell not created in place is not converted")
    cell = cells[0]
    if env.linen_member(cell.func) not in RNN_CELLS:
        raise Unconvertible(f"`nn.RNN` of a cell other than {', '.join(RNN_CELLS)} "
                            "(NNX's GRUCell lays out its parameters differently)")
    return cell


def size_name(argument: str, index: int) -> str:
    """The ``__init__`` parameter for the feature size of a ``__call__`` argument."""
    return "in_features" if index == 0 else f"{argument}_features"


def input_sizes(converted: ConvertedClass, inputs: Sequence[Shape], what: str) -> dict[str, Size]:
    """The caller's values for a converted class's input size parameters."""
    sizes = {}
    for parameter, index in converted.size_params.items():
        shape = inputs[index] if index < len(inputs) else None
        if not shape or shape[-1] is None:
            raise Unconvertible(f"the input size of {what} cannot be determined statically")
        sizes[parameter] = shape[-1]
    return sizes


def _drop_param(function: cst.FunctionDef, name: str) -> cst.FunctionDef:
    params = function.params
    kept = [p for p in params.params if p.name.value != name]
    kwonly = [p for p in params.kwonly_params if p.name.value != name]
    if kept and kept[-1].comma is not cst.MaybeSentinel.DEFAULT and not kwonly and params.star_arg in (
            None, cst.MaybeSentinel.DEFAULT):
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    star_arg = params.star_arg
    if not kwonly and isinstance(star_arg, cst.ParamStar):
        star_arg = cst.MaybeSentinel.DEFAULT
        if kept:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return function.with_changes(params=params.with_changes(params=kept, kwonly_params=kwonly, star_arg=star_arg))


def drop_args(call: cst.Call, remove: Callable[[int, Optional[str]], bool]) -> cst.Call:
    """``call`` without the arguments ``remove(position, keyword)`` selects."""
    kept = [arg for index, arg in enumerate(call.args) if not remove(index, _keyword(arg))]
    if kept and len(kept) < len(call.args):
        last_original = call.args[-1]
        kept[-1] = kept[-1].with_changes(comma=last_original.comma)
    return call.with_changes(args=kept)


class _LinenFunctions(cst.CSTTransformer):
    """``nn.relu`` -> ``nnx.relu``; any other Linen name is unconvertible."""

    def __init__(self, converter: ClassConverter) -> None:
        super().__init__()
        self.converter = converter

    def leave_Attribute(self, original_node, updated_node):
        return self.converter._nnx_reference(original_node, updated_node)

    def leave_Name(self, original_node, updated_node):
        return self.converter._nnx_reference(original_node, updated_node)


class _CallRewriter(_LinenFunctions):
    """Rewrites ``__call__`` in order, following shapes statement by statement."""

    def __init__(self, converter: ClassConverter, shapes: dict[str, Shape]) -> None:
        super().__init__(converter)
        self.shapes = shapes
        self.call_shapes: dict[int, Shape] = {}
        self.output: Shape = None
        self.mode_reads: dict[str, int] = {}
        self.called_at_once: set[int] = set()
        self.assigned_values: set[int] = set()  # ``w = self.param(...)``: the call is converted
        self.keyword_names: set[int] = set()  # ``deterministic`` in ``f(deterministic=...)`` reads nothing
        self.depth = 0  # inside loops/branches/nested functions: no inline construction
        self.variable_locals: set[str] = set()  # ``mean`` in ``mean = self.variable(...)``
        self.variable_reads: set[int] = set()  # the ``mean`` of ``mean.value`` and of that assignment
        self.init_guards = 0  # inside ``if not self.is_initializing():``

    # control flow: constructions inside are not converted
    def visit_For(self, node) -> None:
        self.depth += 1

    def leave_For(self, original_node, updated_node):
        self.depth -= 1
        return updated_node

    visit_While, leave_While = visit_For, leave_For
    visit_Lambda, leave_Lambda = visit_For, leave_For

    def visit_If(self, node: cst.If) -> None:
        self.depth += 1
        self.init_guards += self._is_init_guard(node)

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        """``if not self.is_initializing(): body`` -> ``body``: NNX's ``__init__``
        never runs ``__call__``, so every call is past initialization."""
        self.depth -= 1
        if not self._is_init_guard(original_node):
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
                and self.converter._is_self_call(test.expression.func, "is_initializing"))

    def _variable_value(self, node: cst.BaseExpression) -> bool:
        """``mean.value`` for a ``mean = self.variable(...)``, or ``self.mean.value``
        for one made in ``setup``."""
        return isinstance(node, cst.Attribute) and node.attr.value == "value" and self._variable(node.value)

    def _variable(self, node: cst.BaseExpression) -> bool:
        return (isinstance(node, cst.Name) and node.value in self.variable_locals) \
            or _is_self_attribute(node) in self.converter.variables

    def _check_variable_write(self, target: cst.BaseExpression) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._check_variable_write(element.value)
        elif self._variable_value(target) and not self.init_guards:
            raise Unconvertible("a write to a `self.variable` outside `if not self.is_initializing():` "
                                "also runs in Linen's `init`, and NNX's `__init__` does not call `__call__`")

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._check_variable_write(node.target)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.variable_reads.add(id(node.attr))  # ``x.mean`` reads no ``mean``
        if self._variable_value(node):
            self.variable_reads.add(id(node.value))
        elif _is_self_attribute(node) in self.converter.variables and id(node) not in self.variable_reads:
            raise Unconvertible(f"`{self.converter.env.code(node)}` (a Linen Variable) is used other than "
                                "through `.value`")

    def leave_Attribute(self, original_node, updated_node):
        if self._variable_value(original_node):  # NNX reads and writes a Variable's array as ``v[...]``
            return cst.Subscript(updated_node.value, [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])
        return super().leave_Attribute(original_node, updated_node)

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.keyword_names.add(id(node.keyword))

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.converter._call_param_index and id(node) not in self.keyword_names:
            self.mode_reads[node.value] = self.mode_reads.get(node.value, 0) + 1
        if node.value in self.variable_locals and id(node) not in self.variable_reads | self.keyword_names:
            raise Unconvertible(f"`{node.value}` (a Linen Variable) is used other than through `.value`")

    def visit_Assign(self, node: cst.Assign) -> None:
        self.assigned_values.add(id(node.value))
        for target in node.targets:
            self._check_variable_write(target.target)
        if isinstance(node.value, cst.Call) and self.converter._is_self_call(node.value.func, "variable"):
            if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
                raise Unconvertible("`self.variable` assigned to something other than one name")
            self.variable_locals.add(node.targets[0].target.value)
            self.variable_reads.add(id(node.targets[0].target))

    def leave_Assign(self, original_node, updated_node):
        shape = self.shape_of(original_node.value)
        for target in original_node.targets:
            if isinstance(target.target, cst.Name):
                self.shapes[target.target.value] = shape
        return updated_node

    def leave_Return(self, original_node, updated_node):
        if original_node.value is not None and self.output is None:
            self.output = self.shape_of(original_node.value)
        return updated_node

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call):
            self.called_at_once.add(id(node.func))
            layer = self.converter._layer(node.func.func)
            if layer is not None and layer.sequential:  # its layers are converted with it
                self.called_at_once.update(id(element) for element in sequence_elements(node.func))
            if layer is not None and layer.rnn:  # its cell too
                self.called_at_once.add(id(rnn_cell(node.func, self.converter.env)))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        converter = self.converter
        func = original_node.func
        if id(original_node) in self.called_at_once:
            return updated_node  # ``nn.Dense(3)`` in ``nn.Dense(3)(x)``: the outer call converts both
        if converter._is_self_call(func, "param"):
            if id(original_node) not in self.assigned_values:
                raise Unconvertible("`self.param` inside an expression: assign it to a name first")
            name = string_literal(original_node.args[0].value) if original_node.args else None
            if name is None:
                raise Unconvertible("`self.param` needs a literal name")
            converter._add_param(name, original_node, self.shapes)
            return cst.parse_expression(f"self.{name}[...]")
        if converter._is_self_call(func, "variable"):
            if id(original_node) not in self.assigned_values:
                raise Unconvertible("`self.variable` inside an expression: assign it to a name first")
            if self.depth:
                raise Unconvertible("`self.variable` inside a loop or branch is not converted")
            return cst.parse_expression(f"self.{converter._add_variable(original_node, self.shapes)}")
        if converter._is_self_call(func, "make_rng") or converter._is_self_call(func, "sow"):
            raise Unconvertible(f"`self.{func.attr.value}` is not converted yet")  # type: ignore[attr-defined]
        if isinstance(func, cst.Call) and converter._layer(func.func) is not None:
            if self.depth:
                raise Unconvertible("submodules created inside a loop or branch are not converted")
            if not converter._compact:
                raise Unconvertible("submodules created in a method without `@nn.compact`")
            if converter._layer(func.func).sequential:  # type: ignore[union-attr]
                return self._expand_sequential(func, original_node, updated_node)
            if converter._layer(func.func).rnn:  # type: ignore[union-attr]
                return self._expand_rnn(func, original_node, updated_node)
            slot = converter.construct(func, None)
            return self._call_slot(slot, original_node, updated_node)
        attribute = _is_self_attribute(func)
        if attribute in converter.slots:
            return self._call_slot(converter.slots[attribute], original_node, updated_node)
        if attribute in converter.other_methods:
            self.call_shapes[id(original_node)] = self._follow_method(attribute, original_node)
            return updated_node
        if converter._layer(func) is not None:
            raise Unconvertible("a submodule created but not called at once is not converted")
        self.call_shapes[id(original_node)] = self._function_shape(original_node)
        return updated_node

    def _call_slot(self, slot: _Slot, original: cst.Call, updated: cst.Call) -> cst.Call:
        converter = self.converter
        layer = converter._layer(slot.construction.func)
        assert layer is not None
        positional = [arg for arg in original.args if arg.keyword is None]
        inputs = [self.shape_of(arg.value) for arg in positional]
        output, child_mode = converter.call_slot(slot, inputs, self.shapes)
        self.call_shapes[id(original)] = output
        call = updated.with_changes(func=cst.parse_expression(f"self.{slot.attribute}"))
        if layer.mapping is not None:
            call = self._layer_call_args(layer.mapping, original, call)
        elif layer.rnn and (len(original.args) != 1 or original.args[0].keyword is not None):
            raise Unconvertible("an `nn.RNN` called with more than its input (`initial_carry=`, ...)")
        elif child_mode is not None:
            call = self._child_call_args(child_mode, original, call)
        return call

    def _expand_sequential(self, construction: cst.Call, call: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """``nn.Sequential([nn.Dense(8), nn.relu])(x)`` under ``@nn.compact``: Linen
        names the layers as the parent's own (``Dense_0``), so they become the
        parent's attributes, applied in order: ``nnx.relu(self.dense_0(x))``."""
        converter = self.converter
        if len(call.args) != 1 or call.args[0].keyword is not None:
            raise Unconvertible("an inline `nn.Sequential` called with more than its input")
        expression = updated.args[0].value
        shape = self.shape_of(call.args[0].value)
        for element in sequence_elements(construction):
            if isinstance(element, cst.Call) and converter._layer(element.func) is not None:
                slot = converter.construct(element, None)
                shape, mode = converter.call_slot(slot, [shape], self.shapes)
                if mode is not None:
                    raise Unconvertible("a module with a train/eval argument inside `nn.Sequential`")
                function = f"self.{slot.attribute}"
            elif self.converter.env.nnx_function(element) is not None:
                function = self.converter.env.nnx_function(element)  # type: ignore[assignment]
                shape = shape if converter.env.linen_member(element) in ELEMENTWISE_FUNCTIONS else None
            else:
                raise Unconvertible("`nn.Sequential` with elements other than layers and Linen functions")
            expression = cst.Call(cst.parse_expression(function), [cst.Arg(expression)])
        self.call_shapes[id(call)] = shape
        return expression

    def _expand_rnn(self, construction: cst.Call, call: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """``nn.RNN(nn.LSTMCell(16))(xs)`` under ``@nn.compact``: Linen makes the cell the
        parent's own submodule (``LSTMCell_0``) and the RNN holds no variables, so the
        cell becomes the parent's attribute, scanned by an ``nnx.RNN`` where it is called
        (both scan axis 1 from a zero carry)."""
        converter = self.converter
        if len(call.args) != 1 or call.args[0].keyword is not None:
            raise Unconvertible("an `nn.RNN` called with more than its input (`initial_carry=`, ...)")
        cell = rnn_cell(construction, converter.env)
        slot = converter.construct(cell, None)
        sequence = self.shape_of(call.args[0].value)
        converter.call_slot(slot, [sequence], self.shapes)
        self.call_shapes[id(call)] = converter.rnn_output(cell, sequence, self.shapes)
        rnn = cst.Call(cst.parse_expression(f"{converter.env.nnx}.RNN"), [cst.Arg(cst.parse_expression(
            f"self.{slot.attribute}"))])
        return updated.with_changes(func=rnn)

    def _follow_method(self, name: str, call: cst.Call) -> Shape:
        """``self.encode(x)``: convert ``encode`` with the shapes it is called with."""
        converter = self.converter
        if name in converter.followed_methods:
            raise Unconvertible(f"`self.{name}` is called more than once in `__call__`")
        method = converter.other_methods[name]
        params = _function_params(method)[1:]
        if any(arg.keyword is not None or arg.star for arg in call.args) or len(call.args) > len(params):
            raise Unconvertible(f"`self.{name}(...)` with keyword or starred arguments is not followed")
        shapes = {param.name.value: self.shape_of(arg.value) for param, arg in zip(params, call.args)}
        follower = _CallRewriter(converter, shapes)
        converter.followed_methods[name] = method.with_changes(body=method.body.visit(follower))
        return follower.output

    def _layer_call_args(self, mapping: LayerMapping, original: cst.Call, call: cst.Call) -> cst.Call:
        names_by_position = ("inputs",) + mapping.call_positional
        args = []
        for index, (arg, new_arg) in enumerate(zip(original.args, call.args)):
            keyword = _keyword(arg)
            if keyword is None and index >= len(names_by_position):
                raise Unconvertible(f"too many positional arguments in a call of `{mapping.linen}`")
            name = keyword or names_by_position[index]
            if name == mapping.mode_flag:
                if self._consume_mode(arg.value) is None:
                    continue  # the flag is the module's mode: model.train()/eval() sets it
                new_arg = new_arg.with_changes(keyword=cst.Name(name), equal=cst.AssignEqual(
                    cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            elif name in mapping.call_renamed:
                new_arg = new_arg.with_changes(keyword=cst.Name(mapping.call_renamed[name]), equal=cst.AssignEqual(
                    cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            elif keyword is None and index > 0 and mapping.linen == "SelfAttention":
                new_arg = new_arg.with_changes(keyword=cst.Name(name), equal=cst.AssignEqual(
                    cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            elif name == "inputs_kv":
                raise Unconvertible("`inputs_kv=` has no NNX equivalent: pass `inputs_k` and `inputs_v`")
            args.append(new_arg)
        if args and len(args) < len(call.args):
            args[-1] = args[-1].with_changes(comma=call.args[-1].comma)
        return call.with_changes(args=args)

    def _consume_mode(self, value: cst.BaseExpression) -> Optional[bool]:
        constant = self.converter._mode_use(value, True)
        if constant is None:
            self.converter.mode_consumed += 1
        else:
            self.converter.constant_flags = True
        return constant

    def _child_call_args(self, child_mode: Mode, original: cst.Call, call: cst.Call) -> cst.Call:
        def is_mode(index: int, keyword: Optional[str]) -> bool:
            return keyword == child_mode.name or (keyword is None and index == child_mode.index)

        found = [arg for index, arg in enumerate(original.args) if is_mode(index, _keyword(arg))]
        if len(found) != 1:
            raise Unconvertible("a submodule is called without its train/eval argument")
        if self.converter._mode_use(found[0].value, child_mode.eval_value) is not None:
            raise Unconvertible("a submodule is called with a constant train/eval argument")
        self.converter.mode_consumed += 1
        return drop_args(call, is_mode)

    # -- shapes ------------------------------------------------------------
    def shape_of(self, node: cst.BaseExpression) -> Shape:
        if isinstance(node, cst.Name):
            return self.shapes.get(node.value)
        if isinstance(node, cst.Call):
            return self.call_shapes.get(id(node))
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, _ELEMENTWISE_OPERATORS):
            left, right = self.shape_of(node.left), self.shape_of(node.right)
            if left is not None and right is not None and left != right:
                return None  # broadcasting two arrays: not followed
            return left or right  # an array with a scalar keeps its shape
        return None

    def _function_shape(self, call: cst.Call) -> Shape:
        converter = self.converter
        func = call.func
        args = [arg for arg in call.args if arg.keyword is None]
        keywords = {_keyword(arg): arg.value for arg in call.args if arg.keyword is not None}
        qualified = converter.env.resolve(func) or ""
        short = qualified.rpartition(".")[2]
        if qualified.startswith(("flax.linen.", "jax.nn.", "jax.numpy.")) and short in ELEMENTWISE_FUNCTIONS \
                and args:
            return self.shape_of(args[0].value)
        if qualified.startswith("flax.linen.") and short in POOLING_FUNCTIONS and args:
            return self._pool_shape(args, keywords)
        if isinstance(func, cst.Attribute) and func.attr.value == "reshape":
            return self._reshape_shape(func.value, call)
        if qualified in ("jax.numpy.mean", "jax.numpy.sum", "jax.numpy.max") and args:
            return self._reduce_shape(self.shape_of(args[0].value), keywords.get("axis"), keywords.get("keepdims"))
        if isinstance(func, cst.Attribute) and func.attr.value in ("mean", "sum", "max") and not args:
            return self._reduce_shape(self.shape_of(func.value), keywords.get("axis"), keywords.get("keepdims"))
        return None

    def _pool_shape(self, args, keywords) -> Shape:
        shape = self.shape_of(args[0].value)
        given = dict(zip(("inputs", "window_shape", "strides", "padding"), (a.value for a in args)))
        given.update(keywords)
        if not shape or "window_shape" not in given:
            return None
        rank = len(shape) - 2
        window = int_tuple(given["window_shape"], rank)
        strides = int_tuple(given.get("strides"), rank) if "strides" in given else (1,) * rank
        padding = string_literal(given.get("padding", cst.SimpleString("'VALID'")))
        if window is None or strides is None or padding is None:
            return (shape[0],) + (None,) * rank + (shape[-1],)
        return ((shape[0],) + tuple(window_output(size, w, s, padding)
                                    for size, w, s in zip(shape[1:-1], window, strides)) + (shape[-1],))

    def _reshape_shape(self, array: cst.BaseExpression, call: cst.Call) -> Shape:
        shape = self.shape_of(array)
        args = [arg.value for arg in call.args]
        if len(args) == 1 and isinstance(args[0], (cst.Tuple, cst.List)):
            args = [element.value for element in args[0].elements]
        if len(args) == 2 and int_literal(args[1]) == -1 and self._is_batch(args[0], array):
            return flatten(shape)
        return None

    @staticmethod
    def _is_batch(node: cst.BaseExpression, array: cst.BaseExpression) -> bool:
        """``x.shape[0]`` of the reshaped array itself."""
        return (isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute)
                and node.value.attr.value == "shape" and isinstance(array, cst.Name)
                and isinstance(node.value.value, cst.Name) and node.value.value.value == array.value
                and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index)
                and int_literal(node.slice[0].slice.value) == 0)

    @staticmethod
    def _reduce_shape(shape: Shape, axis: Optional[cst.BaseExpression],
                      keepdims: Optional[cst.BaseExpression]) -> Shape:
        if not shape or axis is None or not (keepdims is None or _is_false(keepdims)):
            return None
        axes = int_tuple(axis, 1) if int_literal(axis) is not None else int_tuple(axis, 0)
        if axes is None:
            return None
        dropped = {a % len(shape) for a in axes}
        return tuple(size for index, size in enumerate(shape) if index not in dropped)


"""Converting one Linen Module class into an NNX Module class.

Dataclass fields become ``__init__`` parameters, ``setup()`` becomes
``__init__``, submodules created inline under ``@nn.compact`` become attributes
built in ``__init__`` (named by ``naming.py``), and every layer receives the
input size Linen inferred, found by following shapes through ``__call__``
(``calls.py``).  The train/eval switch of ``__call__`` (``train``,
``deterministic``, ...) is removed: NNX layers carry it, set by
``model.train()`` / ``model.eval()``.  Anything the conversion cannot do
exactly raises ``Unconvertible`` with the reason.
"""

from __future__ import annotations

import builtins
from collections import Counter
from typing import Optional, Sequence

import libcst as cst

from nnxlint.imports import is_docstring
from nnxlint.flax_api import LINEN_MODULE_BASES
from nnxlint.conversion.base import (
    LINEN_COMPACT, ConvertedClass, FileEnv, InitParam, Mode, Slot, Unconvertible, binding_targets, drop_param,
    function_params, names_read, self_attribute, size_name, substitute,
)
from nnxlint.conversion.calls import CallRewriter, LinenFunctions
from nnxlint.conversion.constructs.activation_locals import elementwise_locals
from nnxlint.conversion.constructs.dict_entries import record_dicts
from nnxlint.conversion.constructs.scanned_cell import carry_method, convert_scanned_call, scanned_cell
from nnxlint.conversion.constructs.recurrent_later import cell_base, cell_input, check_cell_methods
from nnxlint.conversion.constructs.setup_code import check_submodule_order
from nnxlint.conversion.constructs.linen_helpers import check_helper_calls
from nnxlint.conversion.constructs.explicit_subclass import convert_explicit_subclass, linen_parent
from nnxlint.conversion.constructs.shadowing_loop import unshadowed_loop_targets
from nnxlint.conversion.constructs.keyword_dict import inlined_keyword_dicts
from nnxlint.conversion.constructs.built_output_size import with_stored_size
from nnxlint.conversion.constructs.branch_names import UnsettledNames
from nnxlint.conversion.constructs.jraph_graph import graph_input
from nnxlint.conversion.constructs.input_axes import open_input, ranked_input, without_dead_locals
from nnxlint.conversion.constructs.layer_factory import LayerFactory
from nnxlint.conversion.fields_and_setup import FieldsAndSetup
from nnxlint.conversion.init_writer import InitWriter
from nnxlint.conversion.layers import LayerConstruction
from nnxlint.conversion.submodule_slots import SubmoduleSlots
from nnxlint.conversion.shapes import ANY_AXES, Bindings, Several, Shape, Size, is_open

# builtin decorators that mean the same on an NNX Module: kept as they are (``classmethod`` and
# ``staticmethod`` only where the method does not build the class: with its Linen signature)
_PLAIN_DECORATORS = frozenset({"property"})
# run-time checks of a method's annotations, which wrap any signature and stay on the NNX method
# (``@typechecked`` above ``@nn.compact``, as gemma writes it; ``@jaxtyped(typechecker=beartype)``)
_TYPE_CHECKERS = frozenset({"typeguard.typechecked", "kauldron.ktyping.typechecked", "kauldron.typing.typechecked",
                            "jaxtyping.jaxtyped", "beartype.beartype"})
_CLASS_LEVEL_DECORATORS = frozenset({"classmethod", "staticmethod"})
# Linen Module methods a subclass may override; their NNX meaning differs or is absent.
_LINEN_MODULE_API = frozenset({
    "__init__", "__post_init__", "param", "variable", "sow", "make_rng", "init", "apply", "bind", "unbind",
    "init_with_output", "is_initializing", "is_mutable_collection", "put_variable", "get_variable",
    "has_variable", "has_rng", "perturb", "tabulate", "lazy_init", "__getattr__", "__setattr__",
})
# Linen names that the construction or call around them converts.


class ClassConverter(LayerConstruction, InitWriter, FieldsAndSetup, SubmoduleSlots):
    """Converts one Linen class, given the shapes of its ``__call__`` inputs."""

    def __init__(self, env: FileEnv, node: cst.ClassDef, inputs: Sequence[Shape],
                 layer_sizes: bool = False, factories: Optional[dict[str, LayerFactory]] = None) -> None:
        self.env = env
        # ``conv`` / ``self.conv`` -> the layer it builds (``constructs/layer_factory.py``); the
        # factories a parent passes to this class's fields come first
        self.layer_factories: dict[str, LayerFactory] = {f"self.{name}": factory
                                                          for name, factory in (factories or {}).items()}
        self.class_choices: dict[str, tuple[str, ...]] = {}  # field -> the module classes it may hold
        # a layer input size nothing here can give becomes a constructor parameter (last resort)
        self.layer_sizes = layer_sizes
        self.layer_size_params: list[str] = []
        self.node = node
        self.inputs = inputs
        self.fields: list[InitParam] = []
        self.field_names: set[str] = set()
        self.class_attributes: dict[str, int] = {}  # ``INFO: ClassVar[Info] = Info()`` -> id of its statement
        self.slots: dict[str, Slot] = {}
        self.slot_order: list[str] = []
        self.slot_guards: dict[str, str] = {}  # submodules built under a branch on fields -> its test
        self.slot_alternatives: dict[str, str] = {}  # ... -> the ``else`` line (``constructs/chosen_module.py``)
        self.init_lines: list[str] = []  # setup statements that are not submodules, in order
        self.setup_values: set[str] = set()  # plain attributes ``setup`` sets, read as ``self.x`` in ``__init__``
        self.display_lines: list[str] = []  # ``print``s of ``setup``: once all is built
        self.params: dict[str, str] = {}  # self.param attributes -> their NNX creation
        self.param_aliases: dict[str, str] = {}  # ``self.weight = self.param('kernel', ...)``: weight -> kernel
        self.table_widths: dict[str, Size] = {}  # 2-D ``self.param`` -> its last axis (``call_shapes.py`` gathers)
        self.variables: dict[str, str] = {}  # self.variable attributes -> their NNX creation
        self.rng_streams: dict[str, str] = {}  # ``self.make_rng`` streams kept -> their ``__init__`` line
        self.dropped: list[str] = []  # what Linen ignores in this run and the conversion leaves out (``sow``)
        self.bridged: list[str] = []  # Linen layers kept in ``nnx.bridge.ToNNX`` (``constructs/linen_bridge.py``)
        self.bridged_names: set[int] = set()  # their ``nn.ConvLocal`` in constructions that become attributes
        self.scan = None  # a cell stepped by a scanned ``__call__`` (``constructs/scanned_cell.py``)
        self.scanned_output: Shape = None
        self.auto_counters: dict[str, int] = {}
        self.unsettled_names = UnsettledNames()  # types numbered differently by a branch's arms
        self.slot_twins: dict[str, Slot] = {}  # the ``else`` arm's module of an ``if`` arm's name
        self.reserved_names: dict[int, str] = {}  # construction -> the auto-name Linen gives it (``reserve_name``)
        self.size_params: dict[str, int] = {}
        self.axis_sizes: dict[str, tuple[int, int, int]] = {}  # ``inputs_shape_1`` (``constructs/input_axes.py``)
        self.shape_aliases: dict[str, Shape] = {}  # ``input_shape = x.shape``: the shape then (ditto)
        self.unranked_read: Optional[str] = None  # the last ``x.shape[1]`` of an input of unknown rank (ditto)
        # a running size of ``__init__`` -> its value after the loop (None: none the builders can read)
        self.final_sizes: dict[str, Optional[str]] = {}
        self.guarded_locals: set[str] = set()  # ``__init__`` locals set only under a branch's test
        self.running_axes: set[str] = set()  # spatial sizes a loop runs in ``__init__`` (``loop_stack.py``)
        self.stored_output: Optional[str] = None  # ``constructs/built_output_size.py``
        self.graph_sizes: dict[str, int] = {}  # a ``jraph.GraphsTuple`` argument's sizes (``constructs/jraph_graph.py``)
        self.mode: Optional[Mode] = None
        self.uses_rngs = False
        self.constant_flags = False
        self.merged_flags: set[str] = set()  # names bound by ``nn.merge_param``: passed on as written
        self._call_param_index: dict[str, int] = {}  # __call__ parameters after self
        self._call_param_defaults: dict[str, bool] = {}
        self.other_methods: dict[str, cst.FunctionDef] = {}
        self.followed_methods: dict[str, cst.FunctionDef] = {}  # converted while following __call__
        self._compact = False
        self._output_shape: Shape = None
        self.mode_consumed = 0  # reads of the mode parameter that the conversion removes
        self.aliases: dict[str, str] = {}  # local name -> its value in ``__init__`` terms
        self._assignments: Counter = Counter()
        self.elementwise_locals: frozenset[str] = frozenset()

    # -- entry ---------------------------------------------------------------
    def run(self) -> ConvertedClass:
        node = self.node
        if node.decorators:
            raise Unconvertible("decorated Linen classes are not converted")
        parent = linen_parent(self)
        if parent is not None:  # ``class DenseExplicit(Dense)`` (``constructs/explicit_subclass.py``)
            return convert_explicit_subclass(self, parent)
        if len(node.bases) != 1 or self.env.resolve(node.bases[0].value) not in LINEN_MODULE_BASES or node.keywords:
            raise Unconvertible("only classes that subclass `nn.Module` (or `nn.RNNCellBase`) directly are converted")
        body = list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
        methods: dict[str, cst.FunctionDef] = {}
        for statement in body:
            if isinstance(statement, cst.FunctionDef):
                methods[statement.name.value] = statement
            elif self._is_field(statement):
                self._add_field(statement)  # type: ignore[arg-type]
            elif not is_docstring(statement):
                raise Unconvertible("class bodies with statements other than fields and methods are not converted")
        if "__call__" not in methods:
            raise Unconvertible("the class has no `__call__`")
        overridden = sorted(set(methods) & _LINEN_MODULE_API)
        if overridden:
            raise Unconvertible(f"the class overrides Linen's `{overridden[0]}`")
        check_cell_methods(self, methods)  # ``constructs/recurrent_later.py``
        check_helper_calls(self, methods)  # ``constructs/linen_helpers.py``
        self.scan = scanned_cell(self, methods["__call__"])  # ``constructs/scanned_cell.py``
        for name, method in methods.items():
            if name == "__call__" and self.scan is not None:
                continue
            compact = any(self.env.resolve(d.decorator) == LINEN_COMPACT for d in method.decorators)
            if compact and name != "__call__":
                raise Unconvertible(f"`@nn.compact` on `{name}`: only a compact `__call__` is converted")
            plain = sum(1 for d in method.decorators if isinstance(d.decorator, cst.Name)
                        and self.env.resolve(d.decorator) is None and (d.decorator.value in _PLAIN_DECORATORS or (
                            d.decorator.value in _CLASS_LEVEL_DECORATORS
                            and not _builds_class(method, node, d.decorator.value))))
            plain += sum(1 for d in method.decorators if self._type_checker(d.decorator))
            if len(method.decorators) > compact + plain:  # ``@partial(nn.scan, ...)``: dropping it would change the call
                if any(isinstance(d.decorator, cst.Name) and d.decorator.value in _CLASS_LEVEL_DECORATORS
                       for d in method.decorators):
                    raise Unconvertible(f"`{name}` builds the class, with its Linen signature")
                raise Unconvertible(f"decorated method `{name}` is not converted")
        if "setup" in methods:
            self._read_setup(methods["setup"])
        self.other_methods = {name: method for name, method in methods.items() if name not in ("setup", "__call__")}
        self._assignments = sum((_assignment_counts(method) for method in methods.values()), Counter())
        # ``activation = nn.relu`` (``constructs/activation_locals.py``)
        self.elementwise_locals = elementwise_locals(self.env, methods.values(), self._assignments)
        call = self._convert_call(methods["__call__"])
        converted_methods = {"__call__": call}
        for name, method in self.other_methods.items():
            converted_methods[name] = self.followed_methods.get(name) \
                or (self.scan and carry_method(self, method, self.scan)) or self._convert_other_method(method)
        for attribute in self.slot_order:
            slot = self.slots[attribute]
            mapping = getattr(self.layer(slot.construction.func), "mapping", None) if slot.init_code is None else None
            if mapping is not None and mapping.input_size is None:
                self.call_slot(slot, [None], {})  # an ``nn.Embed`` only passed to other submodules
            if slot.init_code is None:
                raise Unconvertible(f"`self.{attribute}` is never called in `__call__`: its input size is unknown")
        check_submodule_order(self)
        init = self._build_init(converted_methods)
        # __init__ takes the place of the first field (or of the first method,
        # setup included); a method right after it gets a blank line
        new_body: list[cst.BaseStatement] = []
        init_index: Optional[int] = None
        for statement in body:
            if is_docstring(statement):
                new_body.append(statement)
                continue
            if id(statement) in self.class_attributes.values():
                new_body.append(statement)
                continue
            if init_index is None:
                init_index = len(new_body)
                after_attribute = new_body and id(new_body[-1]) in self.class_attributes.values()
                new_body.append(init.with_changes(leading_lines=statement.leading_lines or (
                    [cst.EmptyLine(indent=False)] if after_attribute else [])))
            if isinstance(statement, cst.FunctionDef) and statement.name.value != "setup":
                method = converted_methods[statement.name.value]
                if len(new_body) == init_index + 1 and not method.leading_lines:
                    method = method.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
                new_body.append(method)
        base = cst.Arg(cst.parse_expression(cell_base(self)))
        new_node = node.with_changes(bases=[base], body=node.body.with_changes(body=new_body))
        return ConvertedClass(node.name.value, new_node, self.size_params, self.fields,
                              with_stored_size(_with_final_sizes(self._output_shape, self.final_sizes),
                                               self.stored_output, self._output_shape),
                              self.mode, self.uses_rngs, self.constant_flags,
                              self.layer_size_params, self.dropped, bridged=self.bridged,
                              size_axes={name: self.axis_sizes[name] for name in self.size_params if name in self.axis_sizes})

    def _type_checker(self, decorator: cst.BaseExpression) -> bool:
        """``@typechecked`` / ``@jaxtyped(typechecker=beartype)``: a check kept on the NNX method
        (also through a module-level alias bound once: gemma's ``typechecked = typing.typechecked``)."""
        target = decorator.func if isinstance(decorator, cst.Call) else decorator
        bindings = self.env.scope.bindings.get(target.value, []) if isinstance(target, cst.Name) else []
        if len(bindings) == 1 and isinstance(bindings[0].node, cst.Assign) and len(bindings[0].node.targets) == 1:
            target = bindings[0].node.value
        return self.env.resolve(target) in _TYPE_CHECKERS

    def is_self_call(self, func: cst.BaseExpression, method: str) -> bool:
        return self_attribute(func) == method

    # -- local aliases -----------------------------------------------------------
    def add_alias(self, name: str, value: cst.BaseExpression, shapes: dict[str, Shape],
                  fixed_only: bool = False) -> None:
        """``config = self.config``, ``dtype = jnp.float32`` or ``d = x.shape[-1]`` in a
        method, the name bound once in the class: a layer argument that reads the
        name gets the value (``fixed_only``: a value that reads no input size, as one bound
        in a branch, ``width = int(64 * self.resnet.width_factor)``)."""
        if self._assignments.get(name) != 1:
            return
        if any((fixed_only or read not in shapes) and not self._fixed_name(read) for read in names_read(value)):
            return
        try:
            self.aliases[name] = self.init_code(value, shapes)
        except Unconvertible:
            return

    def fixed_condition(self, test: cst.BaseExpression, shapes: Optional[dict[str, Shape]] = None) -> Optional[str]:
        """An ``if`` test in ``__init__`` terms when it reads only fields, module names and the
        sizes of inputs (``x.shape[-1] != nout``, ``nout`` an alias: ``in_features != nmid * 4``;
        the ``__init__`` test is the call's for an input of the size the module is built for)."""
        shapes = shapes or {}
        if not all(self._fixed_name(read) or read in shapes for read in names_read(test)):
            return None
        try:
            return self.init_code(test, shapes)
        except Unconvertible:
            return None

    def _fixed(self, node: cst.BaseExpression) -> bool:
        """``node`` reads only fields, aliases of them and module-level names."""
        return all(self._fixed_name(read) for read in names_read(node))

    def _fixed_name(self, name: str) -> bool:
        return name == "self" or name in self.aliases or name in self.env.scope.bindings or hasattr(builtins, name)

    # -- mode flags ------------------------------------------------------------
    def mode_use(self, node: cst.BaseExpression, eval_value: bool) -> Optional[bool]:
        """Records ``node`` as a use of the mode parameter that must be ``eval_value``
        in eval mode; returns the constant when ``node`` is a literal True/False
        (True, too, for a value fixed for the module, such as a field)."""
        negated = False
        while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            negated, node = not negated, node.expression
        if isinstance(node, cst.Name) and node.value in ("True", "False"):
            return (node.value == "True") != negated
        if isinstance(node, cst.Name) and node.value in self.merged_flags:
            return True  # a call-time value NNX layers take as Linen's do (``constructs/merge_param.py``)
        if not (isinstance(node, cst.Name) and node.value in self._call_param_index):
            if self._fixed(node):  # ``config.deterministic``: fixed for the module, kept where it is
                return True
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
        function = unshadowed_loop_targets(self, function)  # ``for features in self.features``
        function = inlined_keyword_dicts(self, function)  # ``nn.Dense(d, **inits)``
        params = function_params(function)[1:]
        self._call_param_index = {param.name.value: index for index, param in enumerate(params)}
        self._call_param_defaults = {param.name.value: param.default.value == "True" for param in params
                                     if isinstance(param.default, cst.Name)
                                     and param.default.value in ("True", "False")}
        shapes = Bindings()
        for index, param in enumerate(params):
            shape = self.inputs[index] if index < len(self.inputs) else None
            shapes[param.name.value] = graph_input(self, param, index) or cell_input(self, param, index) \
                or self._inside_shape(param.name.value, index, shape)
        self._compact = any(self.env.resolve(d.decorator) == LINEN_COMPACT for d in function.decorators)
        if self.scan is not None:
            new_function = convert_scanned_call(self, function, self.scan, shapes)
            self._output_shape = self.scanned_output
            return new_function
        visitor = CallRewriter(self, shapes)
        visitor.call_inputs = True  # its names are ``__call__``'s inputs (``constructs/input_axes.py``)
        visitor.record_dicts = record_dicts(function)  # ``out['key'] = x`` (``constructs/dict_entries.py``)
        new_function = function.with_changes(body=function.body.visit(visitor), decorators=[
            decorator for decorator in function.decorators if self._type_checker(decorator.decorator)])
        new_function = without_dead_locals(function, new_function, self.field_names)  # ``constructs/input_axes.py``
        self._output_shape = visitor.output
        if self.mode is not None:
            if visitor.mode_reads.get(self.mode.name, 0) != self.mode_consumed:
                raise Unconvertible(f"`{self.mode.name}` is used for more than the train/eval switch")
            new_function = drop_param(new_function, self.mode.name)
        return new_function

    def _inside_shape(self, name: str, index: int, shape: Shape) -> Shape:
        """The caller's shape as seen inside: batch unknown, the feature axis a
        new ``__init__`` parameter, the other axes numbers where they are, else
        parameters too (``constructs/input_axes.py``)."""
        if not shape:
            return None
        parameter = size_name(name, index, self.field_names)
        if is_open(shape):
            return open_input(parameter, index)
        if len(shape) < 2:
            return (None,)
        return ranked_input(self, name, index, tuple(shape[1:-1]))

    def _convert_other_method(self, method: cst.FunctionDef) -> cst.FunctionDef:
        class Check(cst.CSTVisitor):
            def visit_Call(inner, node: cst.Call) -> None:
                if self.layer(node.func) is not None or self.is_self_call(node.func, "param"):
                    raise Unconvertible(f"`{method.name.value}` creates submodules or parameters")
        method.visit(Check())
        return method.visit(LinenFunctions(self))  # type: ignore[return-value]


def _with_final_sizes(shape, final_sizes: dict[str, Optional[str]]):
    """The output shape for the classes building this one: no ``__init__`` local in it (an axis
    whose size only such a local holds is unknown there)."""
    if isinstance(shape, Several):
        return type(shape)(tuple(_with_final_sizes(part, final_sizes) for part in shape.parts))
    if not shape or not final_sizes:
        return shape
    unknown = {name for name, value in final_sizes.items() if value is None}
    known = {name: value for name, value in final_sizes.items() if value is not None}
    return tuple(axis if axis is None or axis == ANY_AXES
                 else None if names_read(cst.parse_expression(axis.code)) & unknown
                 else substitute(axis.code, known) for axis in shape)


def _assignment_counts(node: cst.CSTNode) -> Counter:
    """How often each plain name is bound (assigned, loop target, ...) in ``node``;
    a name rebound in place or by a loop counts as bound more than once."""
    counts: Counter = Counter()
    for target, repeatedly in binding_targets(node):
        counts.update(_target_names(target) * (2 if repeatedly else 1))
    return counts


def _target_names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [name for element in target.elements for name in _target_names(element.value)]
    return []


def _builds_class(method: cst.FunctionDef, node: cst.ClassDef, decorator: str) -> bool:
    """Whether a class-level method calls the class: by name, or a classmethod's ``cls``."""
    params = function_params(method)
    builders = {node.name.value} | ({params[0].name.value} if decorator == "classmethod" and params else set())

    class Calls(cst.CSTVisitor):
        found = False

        def visit_Call(self, call: cst.Call) -> None:
            self.found = self.found or (isinstance(call.func, cst.Name) and call.func.value in builders)

    calls = Calls()
    method.body.visit(calls)
    return calls.found

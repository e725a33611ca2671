"""Rewriting a Linen ``__call__`` (and the methods it calls) for NNX, statement by
statement, following array shapes (``call_shapes.py``) so each layer learns its
input size.  Constructs found on the way go to their units (``constructs/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.conversion.base import FactoryUnknown, Slot, Unconvertible, function_params, self_attribute
from nnxlint.conversion.call_shapes import ShapeFollowing
from nnxlint.conversion.control_flow import ControlFlow
from nnxlint.conversion.constructs import SELF_CALLS
from nnxlint.conversion.constructs.dict_entries import bind_entry
from nnxlint.conversion.constructs.layer_factory import bind_layer_factory, check_factory_read, mark_factory_use
from nnxlint.conversion.constructs.branch_module import branch_guard, built_every_iteration
from nnxlint.conversion.constructs.branch_sizes import merged_output
from nnxlint.conversion.constructs.has_variable import bind_initialized_flag, check_flag_read
from nnxlint.conversion.constructs.local_module import bind_local_module, local_module_call, mark_local_module_use
from nnxlint.conversion.constructs.recurrent_later import Carry, bind_rnn, rnn_call
from nnxlint.conversion.constructs.jraph_graph import Graph, bind_graph_function, graph_call
from nnxlint.conversion.constructs.graph_loop import looped_call
from nnxlint.conversion.constructs.partitioning import partitioned_init
from nnxlint.conversion.constructs.input_axes import asserted_rank, shape_bindings
from nnxlint.conversion.constructs.lifted import Lifted, is_lifted, lifted_call, read_lifted
from nnxlint.conversion.constructs.loop_stack import StackLoop, record_loop_local, stacked_call
from nnxlint.conversion.constructs.loop_tail import tail_call
from nnxlint.conversion.constructs.merge_param import bind_merged_flag, is_merge_param, merged_value
from nnxlint.conversion.constructs.sow import DroppedSows
from nnxlint.conversion.constructs.value_dtype import bind_dtypes, forget
from nnxlint.conversion.shapes import Bindings, Several, Shape
from nnxlint.conversion.submodule_calls import SubmoduleCalls

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter


class LinenFunctions(cst.CSTTransformer):
    """``nn.relu`` -> ``nnx.relu``; any other Linen name is unconvertible."""

    def __init__(self, converter: ClassConverter) -> None:
        super().__init__()
        self.converter = converter

    def leave_Attribute(self, original_node, updated_node):
        renamed = self.converter.param_aliases.get(self_attribute(original_node) or "")
        if renamed is not None:  # ``self.weight = self.param('kernel', ...)`` in ``setup``
            return updated_node.with_changes(attr=cst.Name(renamed))
        return self.converter.nnx_reference(original_node, updated_node)

    def leave_Name(self, original_node, updated_node):
        return self.converter.nnx_reference(original_node, updated_node)


class CallRewriter(ControlFlow, SubmoduleCalls, ShapeFollowing, LinenFunctions):
    """Rewrites ``__call__`` in order, following shapes statement by statement."""

    def __init__(self, converter: ClassConverter, shapes: dict[str, Shape]) -> None:
        super().__init__(converter)
        self.shapes = shapes
        self.call_shapes: dict[int, Shape] = {}
        self.call_dtypes: dict[int, str] = {}  # a layer call -> the dtype it returns (``constructs/value_dtype.py``)
        self.output: Shape = None
        self.mode_reads: dict[str, int] = {}
        self.called_at_once: set[int] = set()
        self.assigned_values: set[int] = set()  # ``w = self.param(...)``: the call is converted
        self.keyword_names: set[int] = set()  # ``deterministic`` in ``f(deterministic=...)`` reads nothing
        self.depth = 0  # inside loops/branches/nested functions: no inline construction
        self.variable_locals: set[str] = set()  # ``mean`` in ``mean = self.variable(...)``
        self.variable_reads: set[int] = set()  # the ``mean`` of ``mean.value`` and of that assignment
        self.init_guards = 0  # inside ``if not self.is_initializing():``
        self.partials: set[str] = set()  # ``conv = partial(...)``: local layer factories
        # the tests of the enclosing ``if``s in ``__init__`` terms (None: a value of ``__call__``)
        self.conditions: list[Optional[str]] = []
        self.elifs: set[int] = set()
        self.loops: list[Optional[StackLoop]] = []  # the enclosing ``for`` loops, innermost last
        self.loop_conditions: list[int] = []  # for each, the number of enclosing ``if``s outside it
        self.stacked_classes: set[str] = set()  # classes a loop stacks: created nowhere else
        self.scans: dict[str, Lifted] = {}  # ``Blocks = nn.scan(...)`` / ``nn.remat(...)`` (statement removed)
        self.stack_tails: set[str] = set()  # lists a module after their loop joined (``constructs/loop_tail.py``)
        self.scan_calls: set[int] = set()  # ``Blocks(...)(x, None)`` calls, converted by ``constructs/lifted.py``
        self.local_modules: dict[str, Slot] = {}  # ``embed = nn.Embed(...)`` (``constructs/local_module.py``)
        self.local_module_reads: set[int] = set()  # the ``embed`` of ``embed(x)`` / ``embed.attend(x)``
        self.recurrent: dict = {}  # ``encoder = nn.RNN(cell, ...)`` (``constructs/recurrent_later.py``)
        self.graph_values: dict = {}  # ``net = jraph.GraphNetwork(...)`` (``constructs/jraph_graph.py``)
        self.graph_statements: dict[int, cst.BaseExpression] = {}  # ... -> the call handing over ``self.x``
        self.graph_loops: list = []  # the enclosing message-passing loop (``constructs/graph_loop.py``)
        self.removed_statements: set[int] = set()  # assignments whose statement the conversion removes
        self.factory_reads: set[int] = set()  # the ``conv`` of ``conv(...)(x)`` / ``Block(conv=conv)``
        self.merged_calls: set[int] = set()  # ``flag = nn.merge_param(...)`` (``constructs/merge_param.py``)
        self.initialized_flags: dict = {}  # ``flag = self.has_variable(...)`` (``constructs/has_variable.py``)
        self.initialized_reads: set[int] = set()  # the ``flag`` of ``if flag:``
        self.sows = DroppedSows()  # ``self.sow(...)`` lines left out (``constructs/sow.py``)
        self.branches: dict = {}  # ``if`` -> its shapes (``constructs/branch_sizes.py``)
        self.name_branches: dict = {}  # ``if`` -> Linen's name counters (``constructs/branch_names.py``)
        self.unknown_sizes: dict[str, str] = {}  # name -> the test of ``__call__`` its size depends on
        self.returns: list = []  # (the tests a ``return`` runs under, its shape)
        self.unequal_sums: list = []  # ``call_shapes.py``
        self.call_inputs = False  # the names of ``shapes`` are ``__call__``'s inputs (``constructs/input_axes.py``)
        # ``out['key'] = x`` in a plain local dict: (dict, key) -> shape (``constructs/dict_entries.py``)
        self.record_dicts = frozenset()
        self.entry_shapes: dict[tuple[str, str], Shape] = {}

    def _variable_value(self, node: cst.BaseExpression) -> bool:
        """``mean.value`` for a ``mean = self.variable(...)``, or ``self.mean.value``
        for one made in ``setup``."""
        return isinstance(node, cst.Attribute) and node.attr.value == "value" and self._variable(node.value)

    def _variable(self, node: cst.BaseExpression) -> bool:
        return (isinstance(node, cst.Name) and node.value in self.variable_locals) \
            or self_attribute(node) in self.converter.variables

    def _check_variable_write(self, target: cst.BaseExpression) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._check_variable_write(element.value)
        elif self._variable_value(target) and not self.init_guards:
            raise Unconvertible("a write to a `self.variable` outside `if not self.is_initializing():` "
                                "also runs in Linen's `init`, and NNX's `__init__` does not call `__call__`")

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._check_variable_write(node.target)
        forget(self.shapes, node.target)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.variable_reads.add(id(node.attr))  # ``x.mean`` reads no ``mean``
        if self._variable_value(node):
            self.variable_reads.add(id(node.value))
        elif self_attribute(node) in self.converter.variables and id(node) not in self.variable_reads:
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
        check_flag_read(self, node)
        if node.value in self.scans:
            raise Unconvertible(f"`{node.value}` (a lifted class) is used other than as `{node.value}(...)(x)`")
        check_factory_read(self, node)
        if node.value in self.local_modules and id(node) not in self.local_module_reads:
            raise Unconvertible(f"`{node.value}` (a submodule) is used other than by calling it")
        if node.value in self.converter._call_param_index and id(node) not in self.keyword_names:
            self.mode_reads[node.value] = self.mode_reads.get(node.value, 0) + 1
        if node.value in self.variable_locals and id(node) not in self.variable_reads | self.keyword_names:
            raise Unconvertible(f"`{node.value}` (a Linen Variable) is used other than through `.value`")

    def visit_Assign(self, node: cst.Assign) -> Optional[bool]:
        if is_lifted(self.converter, node.value):
            target = node.targets[0].target if len(node.targets) == 1 else None
            if not isinstance(target, cst.Name) or self.depth or self.converter._assignments.get(target.value) != 1:
                raise Unconvertible("a lifted transform bound to something other than a name assigned once")
            self.scans[target.value] = read_lifted(self.converter, node.value)  # type: ignore[arg-type]
            self.removed_statements.add(id(node))
            return False
        if bind_local_module(self, node) or bind_layer_factory(self, node) or bind_initialized_flag(self, node) \
                or bind_graph_function(self, node) or bind_rnn(self, node):
            return False
        bind_merged_flag(self, node)
        self.assigned_values.add(id(node.value))
        if isinstance(node.value, cst.Call) and self.converter.env.resolve(node.value.func) == "functools.partial":
            self.partials.update(target.target.value for target in node.targets if isinstance(target.target, cst.Name))
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            # in a block, only a value of fields and module names: the same wherever it is read (a
            # message-passing loop's modules read the sizes of its inputs too)
            self.converter.add_alias(node.targets[0].target.value, node.value, self.shapes,
                                     fixed_only=bool(self.depth) and not self.graph_loops)
        record_loop_local(self, node)
        for target in node.targets:
            self._check_variable_write(target.target)
        if isinstance(node.value, cst.Call) and self.converter.is_self_call(node.value.func, "variable"):
            if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
                raise Unconvertible("`self.variable` assigned to something other than one name")
            self.variable_locals.add(node.targets[0].target.value)
            self.variable_reads.add(id(node.targets[0].target))

    def visit_Assert(self, node: cst.Assert) -> None:
        asserted_rank(self, node)  # ``assert x.ndim == 3``: the input's rank

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> Optional[bool]:
        return not self.sows.visit_line(self, node)

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if len(original_node.body) == 1 and id(original_node.body[0]) in self.removed_statements:
            return cst.RemoveFromParent()  # ``Blocks = nn.scan(...)``, ``embed = nn.Embed(...)``: built in __init__
        return self.sows.leave_line(original_node, updated_node)

    def leave_IndentedBlock(self, original_node, updated_node):
        return self.sows.leave_block(updated_node)

    def leave_Assign(self, original_node, updated_node):
        if id(original_node) in self.graph_statements:
            return updated_node.with_changes(value=self.graph_statements[id(original_node)])
        if id(original_node) in self.removed_statements or any(
                loop is not None and id(original_node) in loop.local_assigns for loop in self.loops):
            return updated_node  # ``strides = ...`` of a stack loop: a value of ``__init__``'s loop too
        shape = self.shape_of(original_node.value, several=True)
        for target in original_node.targets:
            self._bind(target.target, shape)
        shape_bindings(self, original_node)  # ``n, l, d = x.shape``, ``input_shape = x.shape``
        bind_dtypes(self, original_node)
        return updated_node

    def _bind(self, target: cst.BaseExpression, shape: Shape) -> None:
        """Names get the shapes of what is assigned: ``mean, logvar = self.encoder(x)``."""
        if isinstance(target, cst.Name):
            self.shapes[target.value] = None if isinstance(shape, Several) and not isinstance(shape, (Graph, Carry)) \
                else shape
        elif isinstance(target, cst.Subscript):
            bind_entry(self, target, None if isinstance(shape, Several) else shape)
        elif isinstance(target, (cst.Tuple, cst.List)):
            parts = shape.parts if isinstance(shape, Several) and len(shape.parts) == len(target.elements) \
                else (None,) * len(target.elements)
            for element, part in zip(target.elements, parts):
                self._bind(element.value, part)

    def leave_Return(self, original_node, updated_node):
        if original_node.value is not None:
            merged_output(self, self.shape_of(original_node.value, several=True))
        return updated_node

    def visit_Call(self, node: cst.Call) -> Optional[bool]:
        if is_merge_param(self.converter, node):
            return False  # ``leave_Call`` rewrites it whole
        construction = node.func
        if isinstance(construction, cst.Call) and (is_lifted(self.converter, construction.func) or (
                isinstance(construction.func, cst.Name) and construction.func.value in self.scans)):
            self.scan_calls.add(id(node))
            return False  # its arguments are visited by ``leave_Call``
        mark_local_module_use(self, node)
        mark_factory_use(self, node)
        loop = self.loops[-1] if self.loops else None
        if id(node) in self.called_at_once and not (loop is not None and self._stacked_by(loop, node)):
            self.converter.reserve_name(node)  # in the order Python creates the modules, as Linen numbers them
        if isinstance(node.func, cst.Call):
            self.called_at_once.add(id(node.func))
            layer = self.converter.layer(node.func.func)
            if layer is not None and layer.bridged:  # replaced with the attribute that holds it
                self.converter.bridged_names.add(id(node.func.func))
            if layer is not None and layer.factory is not None:  # its parts are converted with it
                self.called_at_once.update(id(part) for part in layer.factory.parts(node.func, self.converter))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        converter = self.converter
        func = original_node.func
        if id(original_node) in self.called_at_once:
            return updated_node  # ``nn.Dense(3)`` in ``nn.Dense(3)(x)``: the outer call converts both
        local = rnn_call(self, original_node, updated_node) or local_module_call(self, original_node, updated_node) \
            or graph_call(self, original_node, updated_node)
        if local is not None:
            return local
        if is_merge_param(converter, original_node):
            return merged_value(self, original_node)
        if id(original_node) in self.scan_calls:
            construction = original_node.func
            scan = self.scans.get(getattr(construction.func, "value", None)) \
                or read_lifted(converter, construction.func)
            updated_node = updated_node.with_changes(args=[arg.visit(self) for arg in original_node.args])
            return lifted_call(self, scan, construction, original_node, updated_node)
        method = self_attribute(func)
        if method in SELF_CALLS:
            return SELF_CALLS[method].in_call(self, original_node)
        if isinstance(func, cst.Call) and converter.layer(func.func) is not None:
            looped = looped_call(self, func, original_node, updated_node)  # ``constructs/graph_loop.py``
            if looped is not None:
                return looped
            loop = self.loops[-1] if self.loops else None
            if loop is not None and self._stacked_by(loop, func):
                return stacked_call(self, loop, func, original_node, updated_node)
            if self.stacked_classes & {converter.layer(func.func).user_class,  # type: ignore[union-attr]
                                       getattr(converter.layer(func.func).mapping, "linen", None)}:
                return tail_call(self, func, original_node, updated_node)
            guard = branch_guard(self, func) if self.depth else None  # ``constructs/branch_module.py``
            if not converter._compact:
                raise Unconvertible("submodules created in a method without `@nn.compact`")
            factory = converter.layer(func.func).factory  # type: ignore[union-attr]
            if factory is not None:
                if guard is not None:
                    raise Unconvertible(f"`nn.{factory.name}` created in a branch is not converted")
                return factory.inline(self, func, original_node, updated_node)
            slot = converter.construct(func, None, guard)
            return self._call_slot(slot, original_node, updated_node)
        if isinstance(func, cst.Call) and _class_like(func.func) and converter.layer(func.func) is None:
            raise Unconvertible(f"`{converter.env.code(func.func)}(...)(...)`: `{converter.env.code(func.func)}` is "
                                "not a Linen class of this file or a Flax layer the conversion knows")
        if isinstance(func, cst.Call) and self._builds_module(func.func) and self_attribute(func.func):
            raise FactoryUnknown(f"`{converter.env.code(func.func)}(...)(...)`: `{self_attribute(func.func)}` is a "
                                 "module-valued field; what it builds is known only where a class of this file "
                                 "that builds this one passes a Flax layer or a `partial` of one (a field holding "
                                 "one of several module classes is not converted)")
        if isinstance(func, cst.Call) and self._builds_module(func.func):
            raise Unconvertible(f"`{converter.env.code(func.func)}(...)(...)`: a submodule built from a module-valued "
                                "field or a `partial` of one is not converted yet")
        if method in converter.slots:
            return self._call_slot(converter.slots[method], original_node, updated_node)
        if method in converter.other_methods:
            self.call_shapes[id(original_node)] = self._follow_method(method, original_node)
            return updated_node
        if converter.layer(func) is not None:
            raise Unconvertible(f"`{converter.env.code(func)}(...)`: a submodule created but not called at once (kept, "
                                "or handed to code that calls it later, as a recurrent loop or a jraph builder not "
                                "bound to a name) is not converted")
        self.call_shapes[id(original_node)] = self._function_shape(original_node)
        return partitioned_init(converter, original_node, updated_node)

    def _builds_module(self, func: cst.BaseExpression) -> bool:
        """``self.conv`` (a field, e.g. ``conv: ModuleDef``) or a local ``conv = partial(...)``:
        calling what it gives and then the result builds a submodule in Linen."""
        attribute = self_attribute(func)
        if attribute is not None:
            return attribute not in self.converter.other_methods and attribute not in self.converter.slots
        return isinstance(func, cst.Name) and func.value in self.partials

    def _stacked_by(self, loop: StackLoop, construction: cst.BaseExpression) -> bool:
        """Whether the loop's list holds what ``construction`` builds: made in the loop's body,
        or a layer without variables made in a branch there (``built_every_iteration``)."""
        return loop.depth == self.depth or built_every_iteration(self, loop, construction)

    def _follow_method(self, name: str, call: cst.Call) -> Shape:
        """``self.encode(x)``: convert ``encode`` with the shapes it is called with."""
        converter = self.converter
        if name in converter.followed_methods:
            raise Unconvertible(f"`self.{name}` is called more than once in `__call__`")
        method = converter.other_methods[name]
        if any(isinstance(d.decorator, cst.Name) and d.decorator.value in ("classmethod", "staticmethod")
               for d in method.decorators):
            return None  # it builds no module (``classes._builds_class``): a plain function's result
        params = [param.name.value for param in function_params(method)[1:]]
        positional = [arg for arg in call.args if arg.keyword is None]
        keywords = {arg.keyword.value: arg for arg in call.args if arg.keyword is not None}
        if any(arg.star for arg in call.args) or len(positional) > len(params) \
                or not set(keywords) <= set(params[len(positional):]):
            raise Unconvertible(f"`self.{name}(...)` with starred arguments or arguments that do not match "
                                "its parameters is not followed")
        shapes = Bindings({param: self.shape_of(arg.value, several=True) for param, arg in zip(params, positional)})
        shapes.update({param: self.shape_of(arg.value, several=True) for param, arg in keywords.items()})
        follower = CallRewriter(converter, shapes)
        converter.followed_methods[name] = method.with_changes(body=method.body.visit(follower))
        return follower.output


def _class_like(func: cst.BaseExpression) -> bool:
    """``Block`` or ``layers.Block``: a name spelled like a class."""
    name = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
    return name[:1].isupper()

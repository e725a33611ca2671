"""Converting Linen training code: init/apply, TrainState and optax state, jitted steps.

The conversion follows *roles*: which names hold the Linen model's variables
(``params``, ``batch_stats``, the ``variables`` dict), a ``TrainState`` or an
optax state.  In NNX all of them live in two objects, the model and an
``nnx.Optimizer``; so a role name in a parameter list, argument list, return or
assignment becomes ``model`` / ``optimizer`` or disappears, and the statements
that only moved state around (``apply_updates``, ``state.replace``, ...) go.
Any use of a role name the conversion does not understand raises
``Unconvertible``: a half-converted training loop would be worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import (
    ConvertedClass, FileEnv, Unconvertible, binding_targets, drop_args, line_of, name_counts, names_read,
    single_assign,
)
from nnxlint.conversion.blank_lines import KeepsBlankLines
from nnxlint.conversion.constructs.variables_display import displayed_variables
from nnxlint.conversion.training_constructs.decode_cache import (
    DecodeSite, decode_init, decode_statement, follow_uses,
)
from nnxlint.conversion.training_constructs.capture import (
    capture_call, captured_updates, check_reads, read_collection,
)
from nnxlint.conversion.training_constructs.fresh_model import check_same_model, is_fresh_model
from nnxlint.conversion.training_constructs.helper_init import helper_site
from nnxlint.conversion.training_constructs.linen_apply import bound_function_call
from nnxlint.conversion.training_constructs.model_creation import (
    creation_lines, drop_construction, parsed_statement,
)
from nnxlint.conversion.training_constructs.unfollowed_init import unfollowed_init
from nnxlint.conversion.training_modes import FunctionNode, ModeSwitches, References, statements_of
from nnxlint.conversion.shapes import (
    Shape, int_literal, integer_constants, literal_shape, string_literal, with_unknown_batch,
)

PARAMS, VARIABLES, BATCH_STATS, STATE, OPT_STATE, UPDATES = (
    "params", "variables", "batch_stats", "train state", "optimizer state", "collection updates")
MODEL_ROLES = (PARAMS, VARIABLES, BATCH_STATS)
TRAIN_STATE = "flax.training.train_state.TrainState"
TRANSFORMS = ("jax.value_and_grad", "jax.grad", "jax.jit")  # the ones nnx.* replaces over the model
_ARRAY_CONSTRUCTORS = {"jax.numpy.ones": 0, "jax.numpy.zeros": 0, "jax.numpy.empty": 0,
                       "jax.random.normal": 1, "jax.random.uniform": 1, "jax.random.bernoulli": 2}
_RANDOM_KEYS = ("jax.random.key", "jax.random.PRNGKey")



@dataclass
class InitSite:
    """``variables = model.init(key, x)`` and the construction it belongs to."""

    statement: cst.SimpleStatementLine
    call: cst.Call  # the .init(...) call
    model_name: str
    class_name: str
    construction: cst.Call  # Class(...)
    construction_statement: Optional[cst.SimpleStatementLine]
    target_role: str
    # ``def get_initial_params(rng, model)`` calling ``init`` for its caller (``helper_init.py``): the
    # statement is the caller's, the call the helper's with the caller's arguments; the helper goes
    helper: Optional[cst.FunctionDef] = None


@dataclass
class TrainingPlan:
    site: InitSite
    converted: ConvertedClass
    converted_construction: str = ""  # ``Model(16, rngs=nnx.Rngs(0))``



def _keyword(arg: cst.Arg) -> Optional[str]:
    return arg.keyword.value if arg.keyword is not None else None


def _subscript_key(node: cst.BaseExpression) -> Optional[tuple[cst.BaseExpression, str]]:
    """``x['params']`` -> (x, 'params')."""
    if (isinstance(node, cst.Subscript) and len(node.slice) == 1
            and isinstance(node.slice[0].slice, cst.Index)):
        key = string_literal(node.slice[0].slice.value)
        if key is not None:
            return node.value, key
    return None


def _is_field_line(statement: cst.CSTNode) -> bool:
    """``batch_stats: Any`` (or a docstring) in a class body."""
    return isinstance(statement, cst.SimpleStatementLine) and all(
        isinstance(small, cst.AnnAssign) or (isinstance(small, cst.Expr) and isinstance(small.value, cst.SimpleString))
        for small in statement.body)


def _names(target: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(target, (cst.Tuple, cst.List)):
        return [element.value for element in target.elements]
    return [target]


def _plain_read(node: cst.BaseExpression) -> bool:
    """A subscript or attribute of names and constants: reading it again where the model is
    built runs nothing (no call, no walrus)."""
    return isinstance(node, (cst.Subscript, cst.Attribute)) and not any(
        isinstance(part, _RUNS_CODE) for part in walk(node))


_RUNS_CODE = (cst.Call, cst.NamedExpr, cst.Lambda, cst.Await, cst.Yield, cst.BaseComp)


def _bound_names(statement: cst.CSTNode) -> set[str]:
    """The names a statement binds, attribute and subscript owners included (``config.x = 1``
    changes ``config``): assigned, loop and comprehension targets, ``with ... as``."""
    return {name for target, _ in binding_targets(statement, comprehensions=True, withs=True)
            for name in name_counts(target)}


class TrainingConverter:
    """Finds the init site, the roles, and rewrites every statement that uses them."""

    def __init__(self, env: FileEnv, module: cst.Module, path: Optional[str] = None, project=None) -> None:
        self.env = env
        self.module = module
        self.path, self.project = path, project  # the file and the run: which other files import from it
        self.functions: dict[str, cst.FunctionDef] = {}
        self.decode_sites: list[DecodeSite] = []  # decoding through a Linen cache (decode_cache.py)
        self.constants = integer_constants(module)
        self.parents: dict[int, FunctionNode] = {}  # id(statement) -> enclosing function
        self._index(module, module)

    def _index(self, node: cst.CSTNode, owner: FunctionNode) -> None:
        for child in node.children:
            if isinstance(child, cst.BaseStatement):
                self.parents[id(child)] = owner
            if isinstance(child, cst.FunctionDef):
                if child.name.value in self.functions:
                    raise Unconvertible(f"two functions are named `{child.name.value}`")
                self.functions[child.name.value] = child
                self._index(child, child)
            elif not isinstance(child, cst.ClassDef):
                self._index(child, owner)

    # -- the init site -------------------------------------------------------
    def find_init_site(self) -> InitSite:
        sites = [node for node in walk(self.module) if isinstance(node, cst.Call) and self._init_method(node)]
        decode_sites = [site for site in (decode_init(self, call) for call in sites) if site is not None]
        training_sites = [call for call in sites if not any(call is site.init_call for site in decode_sites)]
        if training_sites:  # decoding reads the weights of a model trained in the file
            self.decode_sites, sites = decode_sites, training_sites
            for decode in decode_sites:
                follow_uses(self, decode)
        found = [site for site in (helper_site(self, call) or self._init_site(call) for call in sites)
                 if site is not None]
        if len(found) != 1:
            why = unfollowed_init(self.module, sites) if not found else \
                "lines " + ", ".join(str(line_of(self.module, site.statement)) for site in found)
            raise Unconvertible("the conversion needs exactly one `model.init(key, x)` of a Linen model "
                                f"in the file (found {len(found)}{': ' + why if why else ''})")
        return found[0]

    def _init_method(self, call: cst.Call) -> Optional[cst.Attribute]:
        """``model.init`` of ``model.init(key, x)`` or of ``jax.jit(model.init)(key, x)``
        (NNX builds the model eagerly: the jitted init has no counterpart)."""
        func = call.func
        if isinstance(func, cst.Call) and self.env.resolve(func.func) == "jax.jit" and len(func.args) == 1 \
                and func.args[0].keyword is None:
            func = func.args[0].value
        if isinstance(func, cst.Attribute) and func.attr.value in ("init", "init_with_output") \
                and not (isinstance(func.value, cst.Name) and self.env.resolve(func.value)):
            return func  # (an imported module's ``init``, ``wandb.init(...)``, is no model's)
        return None

    def _init_site(self, call: cst.Call) -> Optional[InitSite]:
        method = self._init_method(call)
        assert method is not None
        owner_model = method.value
        statement = self._statement_of(call)
        if statement is None:
            return None
        assign = single_assign(statement)
        if assign is None or not isinstance(assign.targets[0].target, cst.Name):
            raise Unconvertible("`init` whose result is not assigned to one name is not converted")
        value = assign.value
        role = VARIABLES
        keyed = _subscript_key(value)
        if keyed is not None and keyed[0] is call and keyed[1] == "params":
            role = PARAMS
        elif value is not call:
            raise Unconvertible("`init` must be assigned as `variables = model.init(...)` "
                                "or `params = model.init(...)['params']`")
        if method.attr.value != "init":
            raise Unconvertible("`init_with_output` is not converted")
        if isinstance(owner_model, cst.Call) and self.linen_class(owner_model.func) is not None:
            return InitSite(statement, call, "model", self.linen_class(owner_model.func), owner_model, None, role)
        if not isinstance(owner_model, cst.Name):
            return None
        construction_statement = self._construction_of(owner_model.value, statement)
        if construction_statement is None:
            return None
        construction = single_assign(construction_statement).value  # type: ignore[union-attr]
        return InitSite(statement, call, owner_model.value, self.linen_class(construction.func),  # type: ignore
                        construction, construction_statement, role)

    def _statement_of(self, node: cst.CSTNode) -> Optional[cst.SimpleStatementLine]:
        # simple statements never nest, so this looks at each node at most twice
        for statement in walk(self.module):
            if isinstance(statement, cst.SimpleStatementLine) and any(child is node for child in walk(statement)):
                return statement
        return None

    def _construction_of(self, name: str, before: cst.CSTNode) -> Optional[cst.SimpleStatementLine]:
        """``name = LinenClass(...)`` in the same body as ``before``, earlier."""
        owner = self.parents.get(id(before))
        candidate = None
        for statement in statements_of(owner):
            if statement is before:
                break
            assign = single_assign(statement)
            if assign and isinstance(assign.targets[0].target, cst.Name) and assign.targets[0].target.value == name:
                candidate = statement
        if candidate is None:
            return None
        value = single_assign(candidate).value  # type: ignore[union-attr]
        if isinstance(value, cst.Call) and self.linen_class(value.func) is not None:
            return candidate
        return None

    def linen_class(self, func: cst.BaseExpression) -> Optional[str]:
        """The Linen class a constructor expression names: one of the file (``CNN``) or
        one another file of the run defines (``models.CNN``, ``from .models import CNN``)."""
        if isinstance(func, cst.Name) and func.value in self.env.linen_classes:
            return func.value
        if isinstance(func, (cst.Name, cst.Attribute)) and self.env.imported_classes:
            return self.env.imported_classes.get(self.env.code(func))
        return None

    # -- the example input -----------------------------------------------------
    def input_shapes(self, site: InitSite) -> list[Shape]:
        """The shapes of the example inputs given to ``init`` (None where unknown)."""
        args = [arg for arg in site.call.args if arg.keyword is None and not arg.star]
        if len(args) < 2:
            raise Unconvertible("`init` without an example input")
        return [with_unknown_batch(self._array_shape(arg.value, site.statement)) for arg in args[1:]]

    def runtime_size(self, site: InitSite, index: int, axis: int = -1) -> Optional[str]:
        """``x.shape[-1]`` (or another ``axis``) for the example input ``x`` given to ``init`` at ``index``,
        where the model is built and ``x`` already exists there (a parameter of the
        function, or a name assigned before)."""
        args = [arg for arg in site.call.args if arg.keyword is None and not arg.star][1:]
        if index >= len(args):
            return None
        where = site.statement  # where the NNX model is built (``check_moved_construction``)
        value = args[index].value
        if isinstance(value, cst.Name) or _plain_read(value):  # ``x``, ``xs[0]``, ``batch['image']``
            return f"{self.env.code(value)}.shape[{axis}]" if self._available(value, where) else None
        shape = self._shape_argument(value)  # ``jnp.ones(config.input_shape)``: the config value that sized it
        if isinstance(shape, (cst.Tuple, cst.List)):
            elements = shape.elements
            if any(isinstance(element, cst.StarredElement) for element in elements) or not \
                    -len(elements) <= axis < len(elements):
                return None
            size = elements[axis].value
            return self.env.code(size) if self._available(size, where) else None
        if shape is not None and self._available(shape, where):
            return f"{self.env.code(shape)}[{axis}]"
        return None

    def check_moved_construction(self, site: InitSite) -> None:
        """The NNX model is built where ``init`` was, and ``model = Net(...)`` goes: nothing
        in between may use the model, nor rebind what its construction reads."""
        if site.construction_statement is None:
            return
        owner = self.parents.get(id(site.statement))
        between: list[cst.BaseStatement] = []
        started = False
        for statement in statements_of(owner):
            if any(node is site.statement for node in walk(statement)):
                break
            if started:
                between.append(statement)
            started = started or statement is site.construction_statement
        construction_reads = names_read(site.construction)
        for statement in between:
            if site.model_name in names_read(statement):
                raise Unconvertible(f"`{site.model_name}` is used at line {line_of(self.module, statement)}, between "
                                    f"its construction and `init`, where the NNX model is built")
            rebound = construction_reads & _bound_names(statement)
            if rebound:
                raise Unconvertible(f"`{sorted(rebound)[0]}`, which building `{site.model_name}` reads, is bound "
                                    f"again at line {line_of(self.module, statement)}, before `init`, where the "
                                    "NNX model is built")

    def _available(self, node: cst.BaseExpression, where: cst.CSTNode) -> bool:
        """Whether every name ``node`` reads exists where the model is built: a parameter of the
        function, a name bound before there, or one the module binds (an import)."""
        owner = self.parents.get(id(where))
        parameters = {p.name.value for p in owner.params.params} if isinstance(owner, cst.FunctionDef) else set()
        reads = [node] if isinstance(node, cst.Name) else [
            name for name in walk(node) if isinstance(name, cst.Name)
            and not any(name is part.attr for part in walk(node) if isinstance(part, cst.Attribute))]
        return all(name.value in parameters or self._bound_before(name.value, where)
                   or name.value in self.env.scope.bindings for name in reads)

    def _bound_before(self, name: str, where: cst.CSTNode) -> bool:
        """Whether a statement before the one holding ``where``, in its function or at the top
        of the file, binds ``name`` (``obs, actions = make_batch(key)`` included)."""
        owner = self.parents.get(id(where))
        for body in (statements_of(owner), self.module.body):
            for statement in body:
                if any(node is where for node in walk(statement)):
                    break
                if name in _bound_names(statement):
                    return True
        return False

    def _shape_argument(self, node: cst.BaseExpression) -> Optional[cst.BaseExpression]:
        """The shape given to ``jnp.ones(shape)`` (``jax.random.normal(key, shape)``, ...)."""
        if not isinstance(node, cst.Call):
            return None
        position = _ARRAY_CONSTRUCTORS.get(self.env.resolve(node.func) or "")
        if position is None:
            return None
        args = [arg.value for arg in node.args if arg.keyword is None]
        keywords = {_keyword(arg): arg.value for arg in node.args if arg.keyword is not None}
        return keywords.get("shape") or (args[position] if len(args) > position else None)

    def _array_shape(self, node: cst.BaseExpression, before: cst.CSTNode) -> Shape:
        if isinstance(node, cst.Name):
            value = self._assigned_value(node.value, before)
            return self._array_shape(value, before) if value is not None else None
        if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Slice):
            shape = self._array_shape(node.value, before)  # x[:n] keeps the other axes
            return shape
        shape_node = self._shape_argument(node)
        return literal_shape(shape_node, self.constants) if shape_node is not None else None

    def _assigned_value(self, name: str, before: cst.CSTNode) -> Optional[cst.BaseExpression]:
        owner = self.parents.get(id(before))
        value = None
        for body in (statements_of(owner), self.module.body):
            for statement in body:
                if statement is before:
                    break
                assign = single_assign(statement)
                if assign and isinstance(assign.targets[0].target, cst.Name) and \
                        assign.targets[0].target.value == name:
                    value = assign.value
            if value is not None:
                return value
        return None

    def train_state_subclass(self, node: cst.BaseExpression) -> Optional[cst.ClassDef]:
        """A file-level ``class TrainState(train_state.TrainState)`` that only adds fields."""
        if not isinstance(node, cst.Name):
            return None
        for statement in self.module.body:
            if isinstance(statement, cst.ClassDef) and statement.name.value == node.value and \
                    len(statement.bases) == 1 and self.env.resolve(statement.bases[0].value) == TRAIN_STATE:
                if not all(_is_field_line(line) for line in statement.body.body):  # type: ignore[union-attr]
                    raise Unconvertible(f"`{node.value}` adds more than fields to `TrainState`")
                return statement
        return None

    # -- rngs ---------------------------------------------------------------
    def rngs_code(self, site: InitSite) -> str:
        key = site.call.args[0].value
        nnx = self.env.nnx
        if isinstance(key, cst.Dict):
            parts = []
            for element in key.elements:
                name = string_literal(element.key) if isinstance(element, cst.DictElement) else None
                if name is None:
                    raise Unconvertible("an rngs dict with non-literal keys")
                parts.append(f"{name}={self._seed_code(element.value)}")
            return f"{nnx}.Rngs({', '.join(parts)})"
        if isinstance(key, cst.Name) and isinstance(self._assigned_value(key.value, site.statement), cst.Dict):
            return f"{nnx}.Rngs(**{key.value})"  # a dict of keys by stream name
        return f"{nnx}.Rngs({self._seed_code(key)})"

    def _seed_code(self, key: cst.BaseExpression) -> str:
        """``jax.random.key(0)`` -> ``0``: NNX takes the seed; other keys as they are."""
        if isinstance(key, cst.Call) and self.env.resolve(key.func) in _RANDOM_KEYS and len(key.args) == 1 \
                and int_literal(key.args[0].value) is not None:
            return self.env.code(key.args[0].value)
        return self.env.code(key)


@dataclass
class _Function:
    """What the role analysis knows about a local function."""

    node: cst.FunctionDef
    param_roles: dict[int, str] = field(default_factory=dict)
    return_roles: dict[int, str] = field(default_factory=dict)  # position in the returned tuple
    returns_state_update: bool = False  # ``return state.apply_gradients(...)``
    creates_state: bool = False  # ``return TrainState.create(...)``


class RoleAnalysis(cst.CSTVisitor):
    """Which names hold Linen variables, train states, optax states."""

    def __init__(self, converter: TrainingConverter, site: InitSite) -> None:
        super().__init__()
        self.converter = converter
        self.env = converter.env
        self.site = site
        self.roles: dict[str, str] = {site_target(site): site.target_role}
        self.functions = {name: _Function(node) for name, node in converter.functions.items()}
        self.aliases: dict[str, str] = {}  # step = jax.jit(train_step): step -> train_step
        self.alias_transforms: dict[str, str] = {}  # step -> jax.jit
        self.owners: dict[int, _Function] = {}  # id(node) -> the innermost local function holding it
        # id(apply call with mutable=) -> the name its updated collections go to
        self.unpacked_mutable_applies: dict[int, str] = {}
        # id(apply call with mutable=['intermediates']) -> the name its captured State goes to
        self.captured_applies: dict[int, str] = {}
        for function in self.functions.values():
            self._own(function.node.body, function)
        self.changed = True

    def _own(self, node: cst.CSTNode, function: "_Function") -> None:
        for child in node.children:
            if isinstance(child, cst.FunctionDef) and child.name.value in self.functions:
                self.owners[id(child)] = function  # the function it is nested in, not its body's owner
                continue
            self.owners[id(child)] = function
            self._own(child, function)

    def run(self) -> None:
        for _ in range(10):
            if not self.changed:
                return
            self.changed = False
            self.converter.module.visit(self)
        raise Unconvertible("the roles of the training variables do not settle")

    def _set(self, name: str, role: str) -> None:
        current = self.roles.get(name)
        if current is None:
            self.roles[name] = role
            self.changed = True
        elif current != role and {current, role} != {UPDATES}:
            raise Unconvertible(f"`{name}` holds both {current} and {role}")

    def role_of(self, node: cst.BaseExpression) -> Optional[str]:
        if isinstance(node, cst.Name):
            return self.roles.get(node.value)
        if isinstance(node, cst.Attribute) and self.role_of(node.value) == STATE:
            return self._collection_role(node.attr.value)
        keyed = _subscript_key(node)
        if keyed is not None and self.role_of(keyed[0]) in (VARIABLES, UPDATES):
            return self._collection_role(keyed[1])
        if isinstance(node, cst.Call) and self.env.resolve(node.func) == "optax.apply_updates" and node.args:
            return self.role_of(node.args[0].value)  # the new params
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "replace" \
                and self.role_of(node.func.value) == STATE and all(self.role_of(arg.value) for arg in node.args):
            return STATE  # state.replace(batch_stats=updates["batch_stats"])
        if isinstance(node, cst.Dict) and node.elements and all(
                isinstance(e, cst.DictElement) and self.role_of(e.value) in MODEL_ROLES for e in node.elements):
            return VARIABLES
        return None

    def _collection_role(self, collection: str) -> Optional[str]:
        """``params``, or a collection the NNX model keeps in place like ``batch_stats``
        (those of ``self.variable`` included)."""
        if collection == "params":
            return PARAMS
        if collection == "batch_stats" or collection in self.env.custom_collections:
            return BATCH_STATS
        return None

    def entry_points(self) -> set[str]:
        """Local functions nothing in the file refers to: called from outside."""
        referenced: set[str] = set()
        definitions = {id(function.node.name) for function in self.functions.values()}  # ``def f``: not a use
        aliases, functions = self.aliases, self.functions

        class Uses(References):
            def visit_Name(inner, node: cst.Name) -> None:
                name = aliases.get(node.value, node.value)
                if name in functions and id(node) not in definitions:
                    referenced.add(name)

        self.converter.module.visit(Uses())
        return set(functions) - referenced

    def is_state_update(self, node: cst.BaseExpression) -> bool:
        """``state.apply_gradients(...)``: a new train state."""
        return (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
                and node.func.attr.value == "apply_gradients" and self.role_of(node.func.value) == STATE)

    def function_called(self, func: cst.BaseExpression) -> Optional[_Function]:
        """The local function a call calls, seeing through jit/grad wrappers."""
        if isinstance(func, cst.Name):
            name = self.aliases.get(func.value, func.value)
            return self.functions.get(name)
        if isinstance(func, cst.Call) and self.env.resolve(func.func) in TRANSFORMS and func.args:
            return self.function_called(func.args[0].value)
        return None

    def is_train_state(self, func: cst.BaseExpression) -> bool:
        if not (isinstance(func, cst.Attribute) and func.attr.value == "create"):
            return False
        owner = func.value
        if self.env.resolve(owner) == TRAIN_STATE:
            return True
        subclass = self.converter.train_state_subclass(owner)
        return subclass is not None

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        function = self.functions.get(node.name.value)
        if function is None:
            return
        params = list(node.params.params)
        for index, role in function.param_roles.items():
            if index < len(params):
                self._set(params[index].name.value, role)

    def visit_Return(self, node: cst.Return) -> None:
        owner = self.owners.get(id(node))
        if owner is None or node.value is None:
            return
        value = node.value
        if self.is_state_update(value):
            owner.returns_state_update = True
            return
        if isinstance(value, cst.Call) and self.is_train_state(value.func):
            owner.creates_state = True
            return
        for index, element in enumerate(_names(value)):
            role = STATE if self.is_state_update(element) else self.role_of(element)
            if role is not None and owner.return_roles.get(index) != role:
                owner.return_roles[index] = role
                self.changed = True

    def visit_Call(self, node: cst.Call) -> None:
        function = self.function_called(node.func)
        if function is not None:
            for index, arg in enumerate(node.args):
                role = self.role_of(arg.value)
                if role is not None and arg.keyword is None and function.param_roles.get(index) != role:
                    function.param_roles[index] = role
                    self.changed = True

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) != 1:
            return
        target, value = node.targets[0].target, node.value
        if isinstance(value, cst.Call) and self.env.resolve(value.func) in TRANSFORMS and isinstance(
                target, cst.Name) and value.args and isinstance(value.args[0].value, cst.Name):
            self.aliases[target.value] = value.args[0].value.value
            self.alias_transforms[target.value] = self.env.resolve(value.func)  # type: ignore[assignment]
            return
        targets, values = _names(target), _names(value)
        if len(targets) == len(values) > 1 or (len(targets) == 1 and not isinstance(value, cst.Call)):
            for name, element in zip(targets, values):
                role = self.role_of(element)
                if role is not None and isinstance(name, cst.Name):
                    self._set(name.value, role)
            return
        if not isinstance(value, cst.Call):
            return
        if self.is_train_state(value.func) and isinstance(target, cst.Name):
            self._set(target.value, STATE)
        elif isinstance(value.func, cst.Attribute) and value.func.attr.value == "init" and len(value.args) == 1 \
                and self.role_of(value.args[0].value) in MODEL_ROLES and isinstance(target, cst.Name):
            self._set(target.value, OPT_STATE)
        elif isinstance(value.func, cst.Attribute) and value.func.attr.value == "update" and len(targets) == 2 \
                and len(value.args) >= 2 and self.role_of(value.args[1].value) == OPT_STATE:
            for name, role in zip(targets, (UPDATES, OPT_STATE)):
                if isinstance(name, cst.Name):
                    self._set(name.value, role)
        elif self.is_apply(value) and (captured := captured_updates(value, target)) is not None:
            self.captured_applies[id(value)] = captured
        elif self.is_apply(value) and any(_keyword(arg) == "mutable" for arg in value.args) and len(targets) == 2:
            if isinstance(targets[1], cst.Name):
                self._set(targets[1].value, UPDATES)
                self.unpacked_mutable_applies[id(value)] = targets[1].value
        else:
            self._assign_from_function(targets, value)

    def _assign_from_function(self, targets: list[cst.BaseExpression], value: cst.Call) -> None:
        function = self.function_called(value.func)
        if function is None:
            return
        grad = (isinstance(value.func, cst.Call) and self.env.resolve(value.func.func) == "jax.value_and_grad") or (
            isinstance(value.func, cst.Name) and self.alias_transforms.get(value.func.value) == "jax.value_and_grad")
        if grad:  # ((loss, aux), grads): the aux part follows the function's return
            if len(targets) != 2 or not isinstance(targets[0], (cst.Tuple, cst.List)):
                return
            inner = _names(targets[0])
            if len(inner) != 2:
                return
            aux = _names(inner[1])
            returned = function.return_roles
            for index, name in enumerate(aux):
                role = returned.get(1 + index) if len(aux) > 1 or 1 in returned else None
                if role is not None and isinstance(name, cst.Name):
                    self._set(name.value, role)
            return
        for index, name in enumerate(targets):
            role = function.return_roles.get(index)
            if role is not None and isinstance(name, cst.Name):
                self._set(name.value, role)
        if (function.returns_state_update or function.creates_state) and len(targets) == 1 \
                and isinstance(targets[0], cst.Name):
            self._set(targets[0].value, STATE)

    def is_apply(self, call: cst.Call) -> bool:
        func = call.func
        if not isinstance(func, cst.Attribute):
            return False
        if func.attr.value == "apply" and isinstance(func.value, cst.Name) and func.value.value == self.site.model_name:
            return True
        if func.attr.value == "apply" and is_fresh_model(self, func.value):
            return True
        return func.attr.value == "apply_fn" and self.role_of(func.value) == STATE


def site_target(site: InitSite) -> str:
    target = single_assign(site.statement).targets[0].target  # type: ignore[union-attr]
    assert isinstance(target, cst.Name)
    return target.value



class TrainingRewriter(KeepsBlankLines, cst.CSTTransformer):
    """Rewrites the training code once the roles are known."""

    def __init__(self, analysis: RoleAnalysis, plan: TrainingPlan, optimizer: str) -> None:
        super().__init__()
        self.analysis = analysis
        self.env = analysis.env
        self.plan = plan
        self.site = plan.site
        self.model = plan.site.model_name
        self.optimizer = optimizer
        self.nnx = self.env.nnx
        self.mode = plan.converted.mode
        self.dropped_rng_names: set[str] = set()  # names only passed as `rngs=` to apply
        self.freed_params: set[str] = set()  # parameters that built the model anew (``latents``)
        self.aux_removed = self._functions_losing_aux()  # their has_aux=True goes
        self.captured = set(analysis.captured_applies.values())  # names holding captured intermediates
        check_reads(analysis.converter.module, self.captured)
        self.entry_points = analysis.entry_points()
        self.switches = ModeSwitches(analysis, plan)  # model.train() / model.eval() before statements
        self.removed_lines: dict[int, list[cst.EmptyLine]] = {}  # ``blank_lines.KeepsBlankLines``

    def _functions_losing_aux(self) -> set[str]:
        """Functions returning ``(loss, aux)`` whose aux holds only training state
        (``batch_stats`` updates): they return just the loss in NNX."""
        analysis = self.analysis
        losing: set[str] = set()

        class Returns(cst.CSTVisitor):
            def visit_Return(inner, node: cst.Return) -> None:
                owner = analysis.owners.get(id(node))
                elements = _names(node.value) if node.value is not None else []
                if owner is not None and len(elements) == 2 and analysis.role_of(elements[0]) is None \
                        and _without_roles(elements[1], analysis.role_of) is None:
                    losing.add(owner.node.name.value)

        analysis.converter.module.visit(Returns())
        return losing

    def on_leave(self, original_node, updated_node):
        result = super().on_leave(original_node, updated_node)
        switch = self.switches.before.get(id(original_node))
        if switch is None:
            return result
        line = self._statement(f"{self.model}.{switch}()")
        if isinstance(result, cst.CSTNode):
            line = line.with_changes(leading_lines=getattr(result, "leading_lines", ()))
            result = result.with_changes(leading_lines=()) if hasattr(result, "leading_lines") else result
            return cst.FlattenSentinel([line, result])
        return line

    # -- helpers -----------------------------------------------------------
    def role(self, node: cst.BaseExpression) -> Optional[str]:
        return self.analysis.role_of(node)

    def _statement(self, code: str) -> cst.SimpleStatementLine:
        return parsed_statement(self.env, code)

    def _replace_line(self, original: cst.SimpleStatementLine, code: str) -> cst.SimpleStatementLine:
        new = self._statement(code)
        return new.with_changes(leading_lines=original.leading_lines,
                                trailing_whitespace=original.trailing_whitespace)

    def _merged(self, roles: list[Optional[str]]) -> list[Optional[str]]:
        """Per item: None (keep), "model", "optimizer", "model+optimizer" or "" (drop)."""
        have_model = have_optimizer = False
        result: list[Optional[str]] = []
        for role in roles:
            if role is None:
                result.append(None)
                continue
            parts = []
            if role in MODEL_ROLES + (STATE,) and not have_model:
                parts.append(self.model)
                have_model = True
            if role in (STATE, OPT_STATE) and not have_optimizer:
                parts.append(self.optimizer)
                have_optimizer = True
            result.append("+".join(parts))
        return result

    # -- functions -----------------------------------------------------------
    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef):
        returns = updated_node.returns
        if returns is not None and self._is_train_state_type(returns.annotation):
            # the function now returns the model and optimizer, or nothing
            updated_node = updated_node.with_changes(returns=None)
        function = self.analysis.functions.get(original_node.name.value)
        if function is None or not function.param_roles:
            return updated_node
        params = list(updated_node.params.params)
        merged = self._merged([function.param_roles.get(i) for i in range(len(params))])
        new_params: list[cst.Param] = []
        for param, action in zip(params, merged):
            if action is None:
                new_params.append(param)
            for name in (action or "").split("+") if action else ():
                new_params.append(param.with_changes(name=cst.Name(name), annotation=None, default=None))
        new_params = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) if i == len(new_params) - 1 and
                      not updated_node.params.kwonly_params else p for i, p in enumerate(new_params)]
        decorators = [self._nnx_decorator(d) for d in updated_node.decorators]
        return updated_node.with_changes(params=updated_node.params.with_changes(params=new_params),
                                         decorators=decorators)

    def _is_train_state_type(self, node: cst.BaseExpression) -> bool:
        return self.env.resolve(node) == TRAIN_STATE or \
            self.analysis.converter.train_state_subclass(node) is not None

    def _nnx_decorator(self, decorator: cst.Decorator) -> cst.Decorator:
        if self.env.resolve(decorator.decorator) == "jax.jit":
            return decorator.with_changes(decorator=cst.parse_expression(f"{self.nnx}.jit"))
        call = decorator.decorator
        nnx_jit = cst.parse_expression(f"{self.nnx}.jit")
        if isinstance(call, cst.Call) and self.env.resolve(call.func) == "jax.jit":
            return decorator.with_changes(decorator=call.with_changes(func=nnx_jit))
        if isinstance(call, cst.Call) and self.env.resolve(call.func) == "functools.partial" and call.args \
                and self.env.resolve(call.args[0].value) == "jax.jit":  # @partial(jax.jit, static_argnums=...)
            first = call.args[0].with_changes(value=nnx_jit)
            return decorator.with_changes(decorator=call.with_changes(args=[first, *call.args[1:]]))
        raise Unconvertible("a training function with a decorator other than `jax.jit` is not converted")

    # -- statements ------------------------------------------------------------
    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine):
        for decode in self.analysis.converter.decode_sites:
            replaced = decode_statement(self, decode, original_node, updated_node)
            if replaced is not None:
                return replaced
        if original_node is self.site.construction_statement:
            return drop_construction(original_node, self.removed_lines)
        if original_node is self.site.statement:
            lines = creation_lines(self.env, self.site, self.plan.converted, self.plan.converted_construction,
                                   original_node, self.removed_lines)
            lines[0] = lines[0].with_changes(trailing_whitespace=original_node.trailing_whitespace)
            return cst.FlattenSentinel(lines) if len(lines) > 1 else lines[0]
        if len(original_node.body) != 1:
            return updated_node
        small = original_node.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            return self._assignment(original_node, small, updated_node)
        if isinstance(small, cst.Return) and small.value is not None:
            return self._return(original_node, small, updated_node)
        return updated_node

    def _assignment(self, original: cst.SimpleStatementLine, assign: cst.Assign,
                    updated: cst.SimpleStatementLine):
        target, value = assign.targets[0].target, assign.value
        target_roles = [self.role(name) for name in _names(target)]
        if not any(target_roles) and not self._has_nested_role(target):
            return updated
        update = self._optimizer_update(value)
        if update is not None:
            return self._replace_line(original, update)
        if isinstance(value, cst.Call) and (self.analysis.is_train_state(value.func) or (
                isinstance(value.func, cst.Attribute) and value.func.attr.value == "init"
                and target_roles == [OPT_STATE])):
            return self._replace_line(original, self._optimizer_creation(value))
        called = self.analysis.function_called(value.func) if isinstance(value, cst.Call) else None
        if called is not None and called.creates_state and target_roles == [STATE]:
            new_value = updated.body[0].value  # type: ignore[attr-defined]
            return self._replace_line(original, f"{self.model}, {self.optimizer} = {self.env.code(new_value)}")
        if called is not None or isinstance(value, cst.Call) and self.analysis.is_apply(value):
            new_small = updated.body[0]
            assert isinstance(new_small, cst.Assign)
            new_target = _without_roles(new_small.targets[0].target, self.role)
            if new_target is None:
                return updated.with_changes(body=[cst.Expr(new_small.value)])
            return updated.with_changes(body=[new_small.with_changes(
                targets=[new_small.targets[0].with_changes(target=new_target)])])
        if all(target_roles) and self._only_moves_state(value):
            return cst.RemoveFromParent()
        raise Unconvertible(f"`{self.env.code(original).strip()}` moves training state in a way "
                            "the conversion does not follow")

    def _has_nested_role(self, target: cst.BaseExpression) -> bool:
        return any(isinstance(name, (cst.Tuple, cst.List)) and
                   (any(self.role(inner) for inner in _names(name)) or self._has_nested_role(name))
                   for name in _names(target))

    def _only_moves_state(self, value: cst.BaseExpression) -> bool:
        """``params = variables['params']``, ``state = state.replace(batch_stats=...)``,
        ``params = optax.apply_updates(params, updates)``: nothing left to do in NNX."""
        if all(self.role(element) for element in _names(value)):
            return True
        if isinstance(value, cst.Call):
            func = value.func
            if self.env.resolve(func) == "optax.apply_updates":
                return all(self.role(arg.value) for arg in value.args)
            if isinstance(func, cst.Attribute) and func.attr.value == "replace" and self.role(func.value) == STATE:
                return all(self.role(arg.value) for arg in value.args)
        return False

    def _optimizer_update(self, value: cst.BaseExpression) -> Optional[str]:
        """``state.apply_gradients(grads=g)`` / ``tx.update(g, opt_state, ...)`` -> ``optimizer.update(model, g)``."""
        if not isinstance(value, cst.Call) or not isinstance(value.func, cst.Attribute):
            return None
        func = value.func
        if func.attr.value == "apply_gradients" and self.role(func.value) == STATE:
            grads = [arg for arg in value.args if _keyword(arg) == "grads" or arg.keyword is None]
            if len(value.args) != 1 or len(grads) != 1:
                raise Unconvertible("`apply_gradients` with arguments other than `grads` is not converted")
            return f"{self.optimizer}.update({self.model}, {self.env.code(grads[0].value)})"
        if func.attr.value == "update" and len(value.args) >= 2 and self.role(value.args[1].value) == OPT_STATE:
            return f"{self.optimizer}.update({self.model}, {self.env.code(value.args[0].value)})"
        return None

    def _optimizer_creation(self, value: cst.Call) -> str:
        if isinstance(value.func, cst.Attribute) and value.func.attr.value == "init":
            tx = self.env.code(value.func.value)
        else:
            keywords = {_keyword(arg): arg.value for arg in value.args}
            if set(keywords) - {"apply_fn", "params", "tx", "batch_stats", *self.env.custom_collections} \
                    or None in keywords:
                raise Unconvertible("`TrainState.create` with arguments other than apply_fn/params/tx")
            tx = self.env.code(keywords["tx"])
        return f"{self.optimizer} = {self.nnx}.Optimizer({self.model}, {tx}, wrt={self.nnx}.Param)"

    def _return(self, original: cst.SimpleStatementLine, small: cst.Return, updated: cst.SimpleStatementLine):
        value = small.value
        assert value is not None
        update = self._optimizer_update(value)
        if update is not None:
            return self._replace_line(original, update)
        if isinstance(value, cst.Call) and self.analysis.is_train_state(value.func):
            optimizer = self._optimizer_creation(value).partition(" = ")[2]
            return self._replace_line(original, f"return {self.model}, {optimizer}")
        owner = self.analysis.owners.get(id(small))
        role = self.role(value)
        if owner is not None and owner.node.name.value in self.entry_points and role is not None:
            # an entry point's caller gets the NNX objects the state became
            returned = self._merged([role])[0]
            if returned:
                return self._replace_line(original, f"return {returned.replace('+', ', ')}")
        new_small = updated.body[0]
        assert isinstance(new_small, cst.Return) and new_small.value is not None
        elements = _names(value)
        updates = [self._replace_line(original, self._optimizer_update(element))  # type: ignore[arg-type]
                   for element in elements if self.analysis.is_state_update(element)]
        if not updates and not any(self.role(element) for element in elements):
            return updated
        new_value = _without_roles(new_small.value,
                                   lambda node: self.role(node) or self.analysis.is_state_update(node))
        lines: list[cst.BaseStatement] = updates
        if new_value is not None:
            lines.append(updated.with_changes(body=[new_small.with_changes(value=new_value)],
                                              leading_lines=() if updates else updated.leading_lines))
        if not lines:
            return cst.RemoveFromParent()
        return lines[0] if len(lines) == 1 else cst.FlattenSentinel(lines)

    # -- expressions -----------------------------------------------------------
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if self.analysis.is_apply(original_node):
            return self._apply(original_node, updated_node)
        qualified = self.env.resolve(original_node.func)
        if qualified in TRANSFORMS and original_node.args:
            function = self.analysis.function_called(original_node.args[0].value)
            if function is not None and function.param_roles:
                if any(_keyword(arg) == "argnums" for arg in original_node.args):
                    raise Unconvertible("`argnums` with Linen params is not converted")
                call = updated_node.with_changes(func=cst.parse_expression(f"{self.nnx}.{qualified[4:]}"))
                if function.node.name.value in self.aux_removed:
                    call = drop_args(call, lambda index, keyword: keyword == "has_aux")
                return call
        function = self.analysis.function_called(original_node.func)
        if function is not None and function.param_roles:
            return self._local_call(original_node, updated_node, function)
        bound = bound_function_call(self, original_node, updated_node)
        if bound is not None:
            return bound
        return displayed_variables(self, original_node, updated_node) or updated_node

    def _local_call(self, original: cst.Call, updated: cst.Call, function: _Function) -> cst.Call:
        merged = self._merged([self.role(arg.value) if arg.keyword is None else None for arg in original.args])
        for index, (arg, action) in enumerate(zip(original.args, merged)):
            if action is None and function.param_roles.get(index) is not None:
                raise Unconvertible(f"`{self.env.code(original)}` passes a value where training state is expected")
        args: list[cst.Arg] = []
        for arg, action in zip(updated.args, merged):
            if action is None:
                args.append(arg)
            for name in action.split("+") if action else ():
                args.append(arg.with_changes(value=cst.Name(name), keyword=None, equal=cst.MaybeSentinel.DEFAULT))
        if args:
            args[-1] = args[-1].with_changes(comma=updated.args[-1].comma)
        return updated.with_changes(args=args)

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript):
        return read_collection(original_node, updated_node, self.captured) or updated_node

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute):
        if original_node.attr.value == "step" and self.role(original_node.value) == STATE:
            # TrainState counts apply_gradients; nnx.Optimizer counts update() the same way
            return cst.parse_expression(f"{self.optimizer}.step[...]")
        return updated_node

    def _apply(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        receiver = original.func.value  # type: ignore[attr-defined]
        if isinstance(receiver, cst.Call):
            self.freed_params |= check_same_model(self.analysis, receiver)
        if not original.args or original.args[0].keyword is not None or \
                self.role(original.args[0].value) not in MODEL_ROLES:
            raise Unconvertible("`apply` with variables the conversion cannot trace to `init`")
        method = None
        mode = self.mode
        kept: list[cst.Arg] = []
        for index, (arg, new_arg) in enumerate(zip(original.args[1:], updated.args[1:])):
            keyword = _keyword(arg)
            if keyword == "method":
                method = string_literal(arg.value) or (arg.value.attr.value if isinstance(
                    arg.value, cst.Attribute) else None)
                if method is None:
                    raise Unconvertible("`method=` that is not a literal name or `Model.method`")
            elif keyword == "rngs":
                self._drop_rngs(arg.value)
            elif keyword == "mutable":
                if id(original) not in self.analysis.captured_applies:
                    self._check_updates_kept(original)
                continue
            elif mode is not None and (keyword == mode.name or (keyword is None and index == mode.index)):
                continue  # model.train() / model.eval() before the statement (``ModeSwitches``)
            elif keyword == "capture_intermediates":  # its nearest NNX twin names values otherwise
                raise Unconvertible("`capture_intermediates=` is not converted: NNX's `nnx.capture(..., "
                                    "method_outputs=nnx.Intermediate)` keys the outputs by method name, not "
                                    "Linen's `__call__` entries")
            else:
                kept.append(new_arg)
        if kept:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        self.switches.apply_mode(original)  # checks the flag
        func = capture_call(self, original, f"{self.model}.{method}" if method else self.model)
        # a ``)`` on a line of its own keeps the arguments on theirs; else they join the call
        own_line = bool(kept) and isinstance(kept[-1].whitespace_after_arg, cst.ParenthesizedWhitespace)
        return cst.Call(cst.parse_expression(func), kept, lpar=updated.lpar, rpar=updated.rpar,
                        whitespace_before_args=updated.whitespace_before_args if own_line else
                        cst.SimpleWhitespace(""))

    def _check_updates_kept(self, apply: cst.Call) -> None:
        """NNX keeps BatchNorm statistics in place; that matches Linen only where the
        program keeps the collections ``apply(..., mutable=...)`` returns."""
        updates = self.analysis.unpacked_mutable_applies.get(id(apply))
        if updates is None:
            raise Unconvertible("`apply(..., mutable=...)` whose result is not unpacked as `output, updates`")
        if updates == "_" or References.count_reads(self.analysis.converter.module, updates) == 0:
            raise Unconvertible("`apply(..., mutable=...)` discards the updated collections, "
                                "which NNX would keep in the model")

    def _drop_rngs(self, value: cst.BaseExpression) -> None:
        """The keys of ``rngs={'dropout': key, 'noise': key2}`` go: the NNX model draws from the
        streams it keeps (``make_rng.py``), whose counters give a new key at each call as the
        program's per-step keys did (same distribution, other values); a stream the model
        does not draw was unused in Linen too."""
        if not isinstance(value, cst.Dict):
            raise Unconvertible("`rngs=` that is not a dict literal")
        for element in value.elements:
            stream = string_literal(element.key) if isinstance(element, cst.DictElement) else None
            if stream is None or stream == "params":
                raise Unconvertible("`rngs=` of `apply` with a stream that is not a literal name, or 'params'")
            if isinstance(element.value, cst.Name):
                self.dropped_rng_names.add(element.value.value)


def _without_roles(node: cst.BaseExpression, role) -> Optional[cst.BaseExpression]:
    """``node`` without the tuple elements that hold training state (nested
    tuples too); a single element left is unwrapped; None when nothing is left."""
    if not isinstance(node, (cst.Tuple, cst.List)):
        return None if role(node) else node
    kept: list[cst.BaseElement] = []
    for element in node.elements:
        if role(element.value):
            continue
        value = _without_roles(element.value, role)
        if value is None:
            continue
        kept.append(element.with_changes(value=value))
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0].value
    kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return node.with_changes(elements=kept)

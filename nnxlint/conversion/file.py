"""Whole-file Linen -> NNX conversion: the unsafe fix behind NNX002.

A Linen model and its training code only work together, so the conversion is
all or nothing per file: the Linen classes (``nnxlint.conversion.classes``), the
training code around ``model.init`` (``nnxlint.conversion.training``), the
``model.train()`` / ``model.eval()`` switches, and the imports.  The result is
a map from each changed top-level statement to its new version, or the reason
why the file gets no fix.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Collection, Optional, Sequence

import libcst as cst

from nnxlint import names
from nnxlint.context import children
from nnxlint.flax_api import FLAX_LINEN, FLAX_NNX, is_linen
from nnxlint.flax_api import LINEN_MODULE_BASES
from nnxlint.conversion.base import ConvertedClass, FileEnv, Unconvertible, drop_args, line_of, single_assign
from nnxlint.conversion.blank_lines import KeepsBlankLines, hand_on_top_level
from nnxlint.conversion.linen_map import SAME_FUNCTIONS
from nnxlint.conversion.class_set import ClassSet
from nnxlint.conversion.models_only import ModelsOnly
from nnxlint.conversion.constructs.jraph_graph import graph_runtime_size
from nnxlint.conversion.constructs.sow import left_out_note
from nnxlint.conversion.constructs.gru import builds_gru, gru_class, gru_note
from nnxlint.conversion.constructs.input_axes import rank_note
from nnxlint.conversion.constructs.linen_bridge import bridge_note, bridge_partials, bridged_linen_reads
from nnxlint.conversion.constructs.param_override import converted_overrides, hold_users
from nnxlint.conversion.import_lines import Replacement, convert_imports, is_import, parts
from nnxlint.conversion.validate import check_converted
from nnxlint.conversion.shapes import Shape
from nnxlint.conversion.training import (
    InitSite, RoleAnalysis, TrainingConverter, TrainingPlan, TrainingRewriter, _names, site_target,
)
from nnxlint.conversion.training_constructs.split_merge import SplitMergeRewriter, check_parameters_only

OPTIMIZER_NAME = "optimizer"
SPLIT_MERGE_NOTE = ("the training code keeps its state as it is: the model is split once with `{nnx}.split` "
                    "and every `apply` becomes `{nnx}.merge({graphdef}, params)(...)`; what held Linen's params "
                    "dict holds the model's `{nnx}.State`")


def linen_module_classes(module: cst.Module, scope: names.Scope,
                         linen_bases: Collection[str] = ()) -> dict[str, cst.ClassDef]:
    """File-level classes that subclass ``flax.linen.Module``, directly or through
    another such class of the file or a Linen class of another file of the run
    (``linen_bases``: as this file spells them)."""
    found: dict[str, cst.ClassDef] = {}
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and any(
                names.resolve(scope, base.value) in LINEN_MODULE_BASES
                or (isinstance(base.value, cst.Name) and base.value.value in found)
                or (linen_bases and module.code_for_node(base.value) in linen_bases)
                for base in statement.bases):
            found[statement.name.value] = statement
    return found


@dataclass
class Conversion:
    replacements: dict[cst.CSTNode, Replacement] = field(default_factory=dict)
    reason: Optional[str] = None  # why no class of the file gets a fix
    converted: list[str] = field(default_factory=list)  # the classes the fix converts
    reasons: dict[str, str] = field(default_factory=dict)  # class that stays Linen -> why
    size_parameters: dict[str, list[str]] = field(default_factory=dict)  # class -> new input-size parameters
    with_training: bool = False  # the fix converts the training code too
    factories: dict[str, str] = field(default_factory=dict)  # ``def model(...): return VAE(...)`` -> its class
    dropped: list[str] = field(default_factory=list)  # what the converted classes leave out, and why (sentences)

    def reason_for(self, name: str) -> Optional[str]:
        if name in self.converted:
            return None
        return self.reasons.get(name) or self.reason or "it is not converted"


def convert_file(module: cst.Module, scope: names.Scope, path: str = "<file>.py",
                 held: Optional[dict[str, str]] = None, project=None) -> Conversion:
    converter = FileConverter(module, scope, path, held, project)
    try:
        return converter.run()
    except Unconvertible as error:
        return Conversion(reason=str(error), reasons=dict(converter.classes.reasons))


class FileConverter:
    """One file's conversion: its environment and class set are also what
    ``nnxlint verify --against`` analyses to find the init site the fix used."""

    def __init__(self, module: cst.Module, scope: names.Scope, path: str,
                 held: Optional[dict[str, str]] = None, project=None) -> None:
        self.module = module
        self.path = path
        self.scope = scope
        # classes that stay Linen for a reason outside the file (a Linen class of another file uses them)
        self.held: dict[str, str] = dict(held or {})
        # factory functions of another file (``models.create``) that build a class of ``env.imported_classes``:
        # converted, they take the input sizes and ``rngs`` keyword-only
        self.factory_spellings: set[str] = set()
        # the run, for which other files use a function of this one (a training file converted with
        # another file's models has no ``env.project`` of its own)
        self.project = project
        from nnxlint.conversion.linen_users import linen_sources  # (it imports this module)

        self.linen_classes = linen_module_classes(module, scope, linen_sources(project, scope, path))
        self.env = FileEnv(module, scope, self._nnx_alias(), self.linen_classes,
                           functions={statement.name.value: statement for statement in module.body
                                      if isinstance(statement, cst.FunctionDef)}, project=project)
        self.classes = ClassSet(self.env)
        self._read_counts: dict[int, tuple[cst.CSTNode, Counter]] = {}  # ``_statement_reads``
        self.users_outside: Optional[dict[str, int]] = None  # ``ModelsOnly.users_outside``, found once
        # ``partial(ResNet, conv=nn.ConvLocal)`` -> the class it builds; then partial -> the factory generated
        # for the layer it passes (``constructs/linen_bridge.py``)
        self.bridged_partials: dict[cst.CSTNode, str] = {}
        self.bridged_passed: dict[str, tuple[str, str]] = {}  # partial -> (factory, layer)
        self.training_note = ""  # how the training code was converted, when not the usual way

    def _nnx_alias(self) -> str:
        return self.scope.local_name(FLAX_NNX) or "nnx"

    def run(self) -> Conversion:
        try:
            replacements = self._run_with_training()
            check_converted(self.module, replacements, self.path)
            return self._result(replacements, with_training=True)
        except Unconvertible as error:
            training_reason = str(error)
        self.classes = self.classes.on_their_own()  # no class is tied to the training code now
        return self.models_only(training_reason)

    def models_only(self, training_reason: str) -> Conversion:
        """The classes converted without the file's training code (there is none, it
        cannot be converted, or another file's was converted with them)."""
        models = ModelsOnly(self)
        replacements = models.run(training_reason)
        check_converted(self.module, replacements, self.path)
        result = self._result(replacements)
        result.factories = {function: built for function, built in models.factories().items()
                            if built in result.converted}
        return result

    def convert_training(self) -> dict[cst.CSTNode, Replacement]:
        """This file's training code, for a model whose classes another file defines
        (``env.imported_classes``, converted by that file's ``classes``)."""
        replacements = self._run_with_training()
        check_converted(self.module, replacements, self.path)
        return replacements

    def _result(self, replacements: dict[cst.CSTNode, Replacement], with_training: bool = False) -> Conversion:
        converted = [name for name in self.linen_classes if name in self.classes.converted]
        sizes = {name: [*self.classes.converted[name].size_params, *self.classes.converted[name].layer_size_params]
                 for name in converted}
        changed = {old: replacement for old, replacement in replacements.items()
                   if not (isinstance(replacement, cst.CSTNode) and replacement.deep_equals(old))}
        dropped = left_out_note([item for name in converted for item in self.classes.converted[name].dropped],
                                self.env.nnx)
        bridged = [layer for name in converted for layer in self.classes.converted[name].bridged]
        dropped += bridge_note(bridged, self.bridged_passed, self.env.nnx, with_training)
        dropped += gru_note(builds_gru(self.env, [self.classes.converted[name].node for name in converted],
                                       self.module), self.env)
        dropped += rank_note([self.classes.converted[name] for name in converted])
        if with_training and self.training_note:
            dropped.append(self.training_note)
        return Conversion(changed, None, converted, dict(self.classes.reasons), sizes, with_training,
                          dropped=dropped)

    # -- the whole file ----------------------------------------------------
    def _run_with_training(self) -> dict[cst.CSTNode, Replacement]:
        training = TrainingConverter(self.env, self.module, self.path, self.project)
        site = training.find_init_site()
        inputs = training.input_shapes(site)
        top = self.classes.convert(site.class_name, inputs)
        used_outside = ModelsOnly(self).users_outside()  # the lines are not needed here
        ModelsOnly(self).keep_classes_given_linen_layers()
        for name in self.linen_classes:
            if name not in self.classes.converted:
                if name in used_outside:
                    raise Unconvertible(f"`{name}` is not part of the model that `init` builds")
                self.classes.try_convert(name)  # a class of its own: converts or stays Linen
        self.classes.close_over_uses()
        if self.held:
            for name, reason in self.held.items():
                self.classes.keep_linen(name, reason)
            self.classes.close_over_uses()
        hold_users(self.env, self.classes, self.held)
        if site.class_name in self.classes.reasons:
            raise Unconvertible(self.classes.reasons[site.class_name])
        staying = set(self.classes.reasons)
        plan = TrainingPlan(site, top)
        plan.converted_construction = self._construction(site, top, inputs, training)
        try:
            new = self._stateful_training(training, plan, staying)
        except Unconvertible as reason:
            new = self._split_merge_training(training, plan, staying, reason)
        for statement in self.module.body:  # the classes that stay Linen, as they are
            if isinstance(statement, cst.ClassDef) and statement.name.value in self.linen_classes \
                    and statement.name.value in staying:
                new[statement] = statement
        self.bridged_passed = bridge_partials(self, new)
        self.convert_imports(new)
        return new

    def _stateful_training(self, training: TrainingConverter, plan: TrainingPlan,
                           staying: set[str]) -> dict[cst.CSTNode, Replacement]:
        """The training code with the model and an ``nnx.Optimizer`` in place of the
        Linen variables, train states and optax states (nnxlint/conversion/training.py)."""
        analysis = RoleAnalysis(training, plan.site)
        analysis.run()
        rewriter = TrainingRewriter(analysis, plan, self._free_name(OPTIMIZER_NAME))
        rewriter.switches.plan(training)
        new = self._rewritten_statements(training, plan.site, rewriter, staying, train_states_go=True)
        self._remove_dead_keys(new, rewriter)
        self.plain_functions_to_nnx(new)
        self._check_nothing_left(new, analysis)
        return new

    def _split_merge_training(self, training: TrainingConverter, plan: TrainingPlan, staying: set[str],
                              stateful: Unconvertible) -> dict[cst.CSTNode, Replacement]:
        """Training code the roles cannot follow, kept as it is around ``nnx.split`` and
        ``nnx.merge`` (``training_constructs/split_merge.py``); when that cannot be done
        either, the reason is the stateful conversion's."""
        site = plan.site
        if site.helper is not None or training.decode_sites:  # they need the stateful conversion
            raise stateful
        try:
            check_parameters_only(self.env, list(self.classes.converted.values()))
            graphdef = self._free_name(f"{site.model_name}_graphdef")
            rewriter = SplitMergeRewriter(self.env, site, training.parents[id(site.statement)], site_target(site),
                                          plan.converted, plan.converted_construction, graphdef)
            new = self._rewritten_statements(training, site, rewriter, staying, train_states_go=False)
            self.plain_functions_to_nnx(new)
            self._check_linen_left(new, self._all_reads(new))
        except Unconvertible:
            raise stateful from None
        self.training_note = SPLIT_MERGE_NOTE.format(nnx=self.env.nnx, graphdef=graphdef)
        return new

    def _rewritten_statements(self, training: TrainingConverter, site: InitSite, rewriter: cst.CSTTransformer,
                              staying: set[str], train_states_go: bool) -> dict[cst.CSTNode, Replacement]:
        new: dict[cst.CSTNode, Replacement] = {}
        variable_classes = self._variable_classes()
        for statement in self.module.body:
            own_class = isinstance(statement, cst.ClassDef) and statement.name.value in self.linen_classes
            if own_class and statement.name.value in self.classes.converted:
                new[statement] = self.classes.converted[statement.name.value].node
                if variable_classes:  # defined before the first class that uses them
                    new[statement] = cst.FlattenSentinel([*variable_classes, new[statement]])
                    variable_classes = []
            elif train_states_go and isinstance(statement, cst.ClassDef) \
                    and training.train_state_subclass(statement.name) is not None:
                new[statement] = cst.RemoveFromParent()
            elif statement is site.helper:  # ``get_initial_params(rng, model)``: the model is built with its weights
                new[statement] = cst.RemoveFromParent()
            elif own_class and statement.name.value in staying:
                continue
            elif not is_import(statement):
                new[statement] = statement.visit(rewriter)
        hand_on_top_level(self.module.body, new, rewriter.removed_lines)  # type: ignore[attr-defined]
        converted_overrides(self.env, self.classes, new)  # ``class StdConv(nn.Conv)`` overriding ``param``
        return new

    def _construction(self, site: InitSite, top: ConvertedClass, inputs: list[Shape],
                      training: TrainingConverter) -> str:
        training.check_moved_construction(site)
        if top.layer_size_params:
            raise Unconvertible(f"the input size `{top.layer_size_params[0]}` of `{site.class_name}` cannot be "
                                "found from the example input passed to `init`")
        built_by = self.env.code(site.construction.func)
        sizes = []
        for parameter, index in top.size_params.items():
            shape = inputs[index] if index < len(inputs) else None
            axis = top.size_axes[parameter][1] if parameter in top.size_axes else -1  # (``constructs/input_axes.py``)
            known = shape[axis] if shape and len(shape) > max(axis, 0) else None
            size = known.code if known is not None else training.runtime_size(site, index, axis)
            size = graph_runtime_size(self.env, site.class_name, index, parameter, size)  # ``graphs.nodes...``
            if size is None:
                raise Unconvertible(f"the input size `{parameter}` of `{site.class_name}` cannot be found from "
                                    "the example input passed to `init`")
            sizes.append(size)
        given = [self.env.code(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT)).strip()  # a call over several lines
                 for arg in site.construction.args]
        if built_by in self.factory_spellings:  # ``def create(...)`` passes them on, keyword-only
            args = given + [f"{parameter}={size}" for parameter, size in zip(top.size_params, sizes)]
        else:
            args = sizes + given
        if top.uses_rngs:  # a model of BatchStats alone takes no rngs
            args.append(f"rngs={training.rngs_code(site)}")
        return f"{built_by}({', '.join(args)})"

    def _variable_classes(self) -> list[cst.BaseStatement]:
        """``class Counter(nnx.Variable)`` for each collection of the user's own, and the GRU
        cell subclass when a converted class builds one (``constructs/gru.py``)."""
        classes = []
        newline, indent = self.module.default_newline, self.module.default_indent
        for collection, type_name in self.env.custom_collections.items():
            if type_name in self.scope.bindings:
                raise Unconvertible(f"the file already uses the name `{type_name}`, the NNX Variable type "
                                    f"for the collection {collection!r}")
            text = (f"class {type_name}({self.env.nnx}.Variable):{newline}"
                    f'{indent}"""The Linen collection {collection!r}."""{newline}')
            statement = cst.parse_statement(text, config=self.module.config_for_parsing)
            classes.append(statement.with_changes(leading_lines=[cst.EmptyLine(indent=False)] * 2))
        converted = [self.classes.converted[name].node for name in self.linen_classes if name in self.classes.converted]
        return classes + gru_class(self.env, converted, self.module)

    # -- cleanup -------------------------------------------------------------
    @staticmethod
    def _reads(node: cst.CSTNode) -> Counter:
        """How often each name is read (not bound) in ``node``: a ``def`` or ``class``
        statement's own name counts as bound, not read (a plain walk, not a LibCST visitor:
        it runs over the whole file several times)."""
        counts: Counter = Counter()
        pending = [node]
        while pending:
            current = pending.pop()
            kind = type(current)
            if kind is cst.Name:
                counts[current.value] += 1  # type: ignore[attr-defined]
            elif kind is cst.Attribute or kind is cst.Arg:  # not the attribute's or the keyword's name
                pending.append(current.value)  # type: ignore[attr-defined]
            elif kind is cst.Param:  # its default and annotation are evaluated where the function is defined
                pending += [part for part in (current.default, current.annotation)  # type: ignore[attr-defined]
                            if part is not None]
            elif kind is cst.AssignTarget:
                if not isinstance(current.target, (cst.Name, cst.Tuple, cst.List)):  # type: ignore[attr-defined]
                    pending.append(current.target)  # type: ignore[attr-defined]
            elif kind is not cst.ImportAlias:
                if kind is cst.FunctionDef or kind is cst.ClassDef:
                    counts[current.name.value] -= 1  # type: ignore[attr-defined]  # the statement binds its name
                pending += children(current)
        return counts

    def _free_name(self, wanted: str) -> str:
        """``wanted``, or the first of ``nnx_<wanted>``, ``<wanted>_2``, ... that the file
        neither binds nor reads (lm1b's ``optimizer = optax.adamw(...)`` keeps its name)."""
        reads = self._statement_reads(self.module)
        candidates = itertools.chain((wanted, f"nnx_{wanted}"), (f"{wanted}_{n}" for n in itertools.count(2)))
        return next(name for name in candidates if name not in self.scope.bindings and not reads[name])

    def _statement_reads(self, node: cst.CSTNode) -> Counter:
        """``_reads`` of a statement, or of the module statement by statement, each node
        counted once: unchanged statements are read again by every cleanup pass."""
        if isinstance(node, cst.Module):
            counts: Counter = Counter()
            for statement in node.body:
                counts.update(self._statement_reads(statement))  # ``update`` keeps the negative counts
            return counts
        known = self._read_counts.get(id(node))
        if known is None or known[0] is not node:
            known = self._read_counts[id(node)] = (node, self._reads(node))  # the node kept: its id stays its own
        return known[1].copy()

    def _all_reads(self, new: dict[cst.CSTNode, Replacement]) -> Counter:
        counts: Counter = Counter()
        for node in new.values():
            for part in parts(node):
                counts += self._statement_reads(part)
        return counts

    def _remove_dead_keys(self, new: dict[cst.CSTNode, Replacement], rewriter: TrainingRewriter) -> None:
        """PRNG keys that only fed Linen's ``rngs={'dropout': ...}`` (NNX layers keep
        their own RNG streams), and the model or optimizer a converted function
        received (as part of a TrainState) but does not use: the parameters,
        arguments and assignments go."""
        before = self._statement_reads(self.module)
        for _ in range(10):  # each pass can free the next link of a key chain
            reads = self._all_reads(new)
            converted_functions = {name for name, function in rewriter.analysis.functions.items()
                                   if function.param_roles}
            unneeded = rewriter.dropped_rng_names | rewriter.freed_params | {rewriter.model, rewriter.optimizer}
            cleaner = _DeadKeyRemover(converted_functions, unneeded, before, reads, self.env, rewriter.analysis.aliases)
            for old, node in list(new.items()):
                new[old] = _visit(node, cleaner)
            cleaner.finish(new)
            if not cleaner.changed:
                return

    def convert_imports(self, new: dict[cst.CSTNode, Replacement]) -> None:
        convert_imports(self.module, self.scope, self.env.nnx, new, self._statement_reads(self.module),
                        self._all_reads(new))

    def _check_nothing_left(self, new: dict[cst.CSTNode, Replacement], analysis: RoleAnalysis) -> None:
        reads = self._all_reads(new)
        for name, role in analysis.roles.items():
            if reads[name] > 0 and name != "_":  # ``_`` is rebound freely (``for _ in ...``)
                raise Unconvertible(f"`{name}` ({role}) is used in a way the conversion does not "
                                    f"follow{self._where_read(new, name)}")
        self._check_linen_left(new, reads)

    def _check_linen_left(self, new: dict[cst.CSTNode, Replacement], reads: Counter) -> None:
        for local, bindings in self.scope.bindings.items():
            if any(is_linen(binding.qualified_name) for binding in bindings) and reads[local] > 0 \
                    and sum(bridged_linen_reads(part, local, self.env.nnx) for node in new.values()
                            for part in parts(node)) < reads[local]:
                raise Unconvertible(f"`{local}` (flax.linen) is still used outside the converted code")

    def plain_functions_to_nnx(self, new: dict[cst.CSTNode, Replacement]) -> None:
        """``nn.log_sigmoid(x)`` and ``nn.initializers.normal()`` left in the file's other code
        (a training loss, a config dataclass) become ``nnx.log_sigmoid``, ``nnx.initializers.normal``:
        flax.nnx exports the very same functions, and the file no longer needs Linen for them.
        Classes that stay Linen keep their spelling."""
        linen_aliases = {local for local, bindings in self.scope.bindings.items()
                         if any(binding.qualified_name == FLAX_LINEN for binding in bindings)}
        if not linen_aliases:
            return
        renamer = _PlainFunctionsToNNX(linen_aliases, self.env.nnx)
        for old, replacement in list(new.items()):
            staying_class = isinstance(old, cst.ClassDef) and old.name.value in self.linen_classes \
                and old.name.value not in self.classes.converted
            if not staying_class:
                new[old] = _visit(replacement, renamer)

    def _where_read(self, new: dict[cst.CSTNode, Replacement], name: str) -> str:
        """`` (line N: `code`)``: the first statement left unchanged by the conversion that
        still reads ``name`` (lm1b's ``cache = initial_variables["cache"]``), for the reason."""
        left = {self.env.code(line).strip() for node in new.values() for part in parts(node)
                for line in _statement_lines(part) if self._statement_reads(line)[name] > 0}
        for old in new:
            for line in _statement_lines(old):
                code = self.env.code(line).strip()
                if code in left:
                    shown = code.splitlines()[0] + (" ..." if "\n" in code else "")
                    return f" (line {line_of(self.module, line)}: `{shown}`)"
        return ""

def _statement_lines(node: cst.CSTNode) -> list[cst.SimpleStatementLine]:
    found: list[cst.SimpleStatementLine] = []

    class Collect(cst.CSTVisitor):
        def visit_SimpleStatementLine(self, line: cst.SimpleStatementLine) -> bool:
            found.append(line)
            return False

    node.visit(Collect())
    return found


def _visit(node: Replacement, visitor: cst.CSTTransformer) -> Replacement:
    if isinstance(node, cst.FlattenSentinel):
        parts = [part.visit(visitor) for part in node.nodes]
        return cst.FlattenSentinel([p for p in parts if isinstance(p, cst.CSTNode)])
    if isinstance(node, cst.CSTNode):
        return node.visit(visitor)
    return node


def _called_function(func: cst.BaseExpression, aliases: dict[str, str]) -> Optional[str]:
    """The local function a call runs: ``f(...)``, ``step(...)`` for ``step = nnx.jit(f)``,
    or ``nnx.value_and_grad(f)(...)``."""
    if isinstance(func, cst.Name):
        return aliases.get(func.value, func.value)
    if isinstance(func, cst.Call) and func.args and isinstance(func.args[0].value, cst.Name):
        return aliases.get(func.args[0].value.value, func.args[0].value.value)
    return None


class _DeadKeyRemover(KeepsBlankLines, cst.CSTTransformer):
    """Drops the parameters named in ``keys`` that a converted function no
    longer reads, with their call-site arguments, and ``name = jax.random...(...)``
    assignments (``key, subkey = jax.random.split(key)`` too) whose names the
    conversion left unread outside the assignment itself."""

    def __init__(self, functions: set[str], keys: set[str], before: Counter, reads: Counter, env: FileEnv,
                 aliases: dict[str, str]) -> None:
        super().__init__()
        self.functions = functions
        self.aliases = aliases
        self.keys = keys
        self.before = before  # reads in the Linen file
        self.reads = reads  # reads in the converted file
        self.scopes: list[Counter] = []  # reads inside the enclosing functions, innermost last
        self.env = env
        self.changed = False
        self.dropped_positions: dict[str, int] = {}  # function -> index of the dropped parameter
        self.removed_lines: dict[int, Sequence[cst.EmptyLine]] = {}  # removed statement -> its leading lines

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.append(FileConverter._reads(node.body))

    def leave_FunctionDef(self, original_node, updated_node):
        self.scopes.pop()
        if original_node.name.value not in self.functions:
            return updated_node
        params = list(updated_node.params.params)
        reads = FileConverter._reads(updated_node.body)
        for index, param in enumerate(params):
            if param.name.value in self.keys and reads[param.name.value] <= 0:
                self.dropped_positions[updated_node.name.value] = index
                kept = params[:index] + params[index + 1:]
                if kept:
                    kept[-1] = kept[-1].with_changes(comma=params[-1].comma)
                self.changed = True
                return updated_node.with_changes(params=updated_node.params.with_changes(params=kept))
        return updated_node

    def leave_SimpleStatementLine(self, original_node, updated_node):
        assign = single_assign(original_node)
        if assign is None:
            return updated_node
        targets = _names(assign.targets[0].target)
        value = assign.value
        if not (isinstance(value, cst.Call) and (self.env.resolve(value.func) or "").startswith("jax.random.")
                and all(isinstance(t, cst.Name) for t in targets)):
            return updated_node
        own_reads = FileConverter._reads(value)
        names = [t.value for t in targets]  # type: ignore[attr-defined]
        scope_reads = self.scopes[-1] if self.scopes else self.reads
        unread = all(scope_reads[name] - own_reads[name] <= 0 for name in names)
        made_unread = any(self.before[name] - own_reads[name] > 0 for name in names)  # not the user's own dead code
        if unread and made_unread:
            self.changed = True
            self.removed_lines[id(original_node)] = [line for line in original_node.leading_lines
                                                     if line.comment is None]
            return cst.RemoveFromParent()
        return updated_node

    def finish(self, new: dict[cst.CSTNode, Replacement]) -> None:
        """Drops the arguments that fed the dropped parameters."""
        if not self.dropped_positions:
            return
        positions = self.dropped_positions
        aliases = self.aliases

        class Calls(cst.CSTTransformer):
            def leave_Call(inner, original_node, updated_node):
                called = _called_function(original_node.func, aliases)
                if called in positions:
                    position = positions[called]
                    return drop_args(updated_node, lambda index, keyword: keyword is None and index == position)
                return updated_node

        for old, node in list(new.items()):
            new[old] = _visit(node, Calls())


class _PlainFunctionsToNNX(cst.CSTTransformer):
    """``nn.f`` -> ``nnx.f`` for Linen's plain functions (``linen_map.SAME_FUNCTIONS``) and
    ``nn.initializers.f`` -> ``nnx.initializers.f``, where ``nn`` is an alias of flax.linen."""

    def __init__(self, linen_aliases: set[str], nnx: str) -> None:
        super().__init__()
        self.linen_aliases = linen_aliases
        self.nnx = nnx

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        if isinstance(updated_node.value, cst.Name) and updated_node.value.value in self.linen_aliases \
                and updated_node.attr.value in (*SAME_FUNCTIONS, "initializers"):
            return updated_node.with_changes(value=cst.Name(self.nnx))
        return updated_node

"""Converting a models file together with the files of the run that import it.

Real projects define the Linen classes in ``models.py`` and build and train them
in ``train.py``.  When NNX002 converts a file whose classes other files of the
run import (``from .models import CNN``, ``import models; models.CNN(...)``), its
fix is project-level (``nnxlint.rule.OtherFiles``):

- the file that calls ``init`` on one of the classes gets its training code
  converted as a single file's would be (``FileConverter.convert_training``), and
  the class is converted for the input shapes that ``init`` is given;
- every other construction of a converted class (or of a factory function that
  builds one) in the run gets the new arguments: ``rngs=nnx.Rngs(0)`` and the
  input sizes where they are known;
- when no training code of the run converts, the files that build the classes
  keep their Linen training code and build them through ``nnx.bridge.to_linen``
  (``constructs/to_linen.py``): ``init``, ``apply`` and ``TrainState`` keep
  working on the NNX classes;
- what cannot be updated -- a construction whose input size is unknown there, a
  file that still uses the class as a Linen model (``init``/``apply``) where the
  training code of another file converted -- is named in a note; code outside the
  run must pass the new arguments itself;
- an importer whose Linen classes use the file's classes is converted with it
  (``linen_users.py``), or holds them Linen.

``nnxlint check`` finds the importers from the project index (no parse), converts
those whose Linen classes use the file's classes (``linen_users.py``), and tries
the training code of another file only when a class stays Linen for want of an
input size; everything else is computed when the fix is applied.
"""

from __future__ import annotations

import ast
import re
import weakref
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from nnxlint import names
from nnxlint.context import walk
from nnxlint.flax_api import FLAX_NNX, is_linen
from nnxlint.imports import add_after_imports, add_imports
from nnxlint.project import dotted_name
from nnxlint.rule import FileEdit, OtherFiles
from nnxlint.textio import SourceError, read_source
from nnxlint.conversion.base import ConvertedClass, Unconvertible
from nnxlint.conversion.constructs import picked_by_name, to_linen, to_linen_decoding, to_linen_sized
from nnxlint.conversion.constructs.jraph_graph import graph_runtime_size
from nnxlint.conversion.training_constructs.init_with_output import model_outputs
from nnxlint.conversion.validate import converted_text

if TYPE_CHECKING:
    from nnxlint.conversion.file import Conversion
    from nnxlint.conversion.linen_users import Together

_LINEN_METHODS = ("init", "apply", "init_with_output", "bind", "tabulate", "lazy_init")
_BRIDGED_API = (*_LINEN_METHODS, "clone")  # what code may use of a model built through the bridge
SEED = "0"  # the seed of the ``nnx.Rngs`` a construction site gets


@dataclass(frozen=True)
class Importer:
    """A file of the run that names classes (or factory functions) of the models file."""

    path: str
    spellings: Mapping[str, str]  # how it spells them (``models.CNN``, ``CNN``) -> their name in the models file


def importers(project, path: str, wanted: Sequence[str]) -> list[Importer]:
    """The files of the run (``project``: the file's ``ProjectView``) that import any of
    the names ``wanted`` from ``path``: read from the index's facts, nothing is parsed."""
    if project is None or not wanted:
        return []
    index = project.index
    facts = index.by_path.get(path)
    if facts is None:
        return []
    module = facts["module"]
    bindings: dict[str, dict[str, str]] = {}  # importing file -> spelling -> name in ``path``
    for other, local, qualified in _imports_of(index).get(module, ()):
        if other == path:
            continue
        spellings = bindings.setdefault(other, {})
        if qualified == module:
            spellings.update((f"{local}.{name}", name) for name in wanted)
        elif qualified.rpartition(".")[2] in wanted:
            spellings[local] = qualified.rpartition(".")[2]
    found = []
    for other, spellings in sorted(bindings.items()):
        resolved = index.module(module, index.by_path[other]["root"]) if spellings else None  # not a namesake
        if resolved is not None and resolved[0] == path:
            found.append(Importer(other, spellings))
            project.used.modules.add(other)  # the file's findings depend on it (the result cache)
    return found


_IMPORTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _imports_of(index) -> dict[str, list[tuple[str, str, str]]]:
    """Module name -> (file of the run, local name, what it binds) for every binding of the
    module or of a name in it, over the ``.py`` files of the run: made once per index."""
    if index not in _IMPORTS:
        found: dict[str, list[tuple[str, str, str]]] = {}
        for path in index.run_paths:
            facts = index.by_path.get(path)
            if facts is None or not path.endswith(".py"):
                continue
            for local, qualified in facts["names"].items():
                found.setdefault(qualified, []).append((path, local, qualified))
                if "." in qualified:
                    found.setdefault(qualified.rpartition(".")[0], []).append((path, local, qualified))
        _IMPORTS[index] = found
    return _IMPORTS[index]


def _spellings_in(node: ast.AST, spellings: Mapping[str, str]) -> list[str]:
    """The names (in the models file) of what ``node`` refers to by one of ``spellings``."""
    found = []
    for child in ast.walk(node):
        if isinstance(child, (ast.Name, ast.Attribute)):
            spelled = spellings.get(dotted_name(child) or "")
            if spelled is not None and spelled not in found:
                found.append(spelled)
    return found


def trains_elsewhere(conversion: "Conversion", importing: Sequence[Importer]) -> bool:
    """Whether the file's classes may convert only with another file's training code:
    the file has none of its own that converts, a class stays Linen for want of an
    input size, and an importer calls ``init`` (its text is searched, not parsed:
    ``nnxlint check`` pays for the parse only then)."""
    if conversion.with_training or not any(_SIZE_REASON.search(reason) for reason in conversion.reasons.values()):
        return False
    for importer in importing:
        try:
            if _INIT_CALL.search(read_source(importer.path).text):
                return True
        except SourceError:
            continue
    return False


_SIZE_REASON = re.compile(r"input size|inputs of different shapes")
_INIT_CALL = re.compile(r"\.init(_with_output)?\(")


@dataclass
class _File:
    path: str
    text: str
    module: cst.Module


class ProjectConversion:
    """The fix of a models file and of the files of the run that import it.  ``single``
    is the file's conversion on its own; the conversion with another file's training
    code (``conversion``) is tried only when asked for, and the fix (``replacements``,
    ``other_files``) computed once, when the engine first asks for either part."""

    def __init__(self, module: cst.Module, scope: names.Scope, path: str, importing: list[Importer],
                 single: "Conversion", held: Optional[dict[str, str]] = None,
                 together: Optional["Together"] = None, foreign: Optional[dict] = None, project=None,
                 foreign_overrides: Optional[dict] = None, texts: Optional[Mapping[str, str]] = None) -> None:
        self.module = module
        self.texts = texts or {}  # what another part of the same fix already made of a file (``linen_users``)
        self.project = project  # the run (``FileEnv.project``)
        self.foreign = foreign or {}  # classes of another file that the file's classes use (``FileEnv``)
        self.foreign_overrides = foreign_overrides or {}  # and ``param``-overriding layers (``FileEnv``)
        self.together = together  # the Linen classes of importers converted with the file's (``linen_users``)
        self.scope = scope
        self.path = path
        self.importing = importing
        self.single = single
        self.held = held or {}
        self.notes: list[str] = []
        self.training_failures: dict[str, str] = {}  # importer -> why its training code is not converted
        self._files: dict[str, Optional[_File]] = {}

    @property
    def conversion(self) -> "Conversion":
        """The file's conversion: with the training code of another file when that converts."""
        across = self._across
        return across[1] if across is not None else self.single

    def fixed(self) -> "Conversion":
        """The conversion the fix makes (with the other files' training code or without)."""
        return self._result[0]

    def replacements(self) -> Mapping[cst.CSTNode, object]:
        return self._result[0].replacements

    def other_files(self) -> OtherFiles:
        return self._result[1]

    @property
    def bridged_files(self) -> tuple[str, ...]:
        """The importers the fix keeps Linen training code in (``nnx.bridge.to_linen``)."""
        return self._result[2]

    def _models_converter(self):
        from nnxlint.conversion.file import FileConverter

        converter = FileConverter(self.module, self.scope, self.path, self.held, self.project)
        converter.env.foreign_classes = self.foreign
        converter.env.foreign_overrides = self.foreign_overrides
        return converter

    def _file(self, importer: Importer) -> Optional[_File]:
        """The importer's text and LibCST module, read once (None when it cannot be)."""
        if importer.path not in self._files:
            try:
                text = self.texts.get(importer.path)
                text = read_source(importer.path).text if text is None else text
                self._files[importer.path] = _File(importer.path, text, cst.parse_module(text))
            except (SourceError, cst.ParserSyntaxError, RecursionError) as error:
                self.notes.append(f"{importer.path} is not updated: it cannot be read or parsed ({error})")
                self._files[importer.path] = None
        return self._files[importer.path]

    @cached_property
    def _across(self):
        """(models converter, conversion, {path: converted training code}) with the training
        code of an importer, or None."""
        if self.single.with_training or self.together is not None:
            return None
        try:
            return self._with_training()
        except Exception as error:  # a bug here must not cost the file its own conversion
            self.notes.append(f"no training code of another file is converted ({type(error).__name__}: {error}); "
                              "please report it")
            return None

    @cached_property
    def _result(self) -> tuple["Conversion", OtherFiles, tuple[str, ...]]:
        try:
            for importer in self.importing:
                self._file(importer)  # read once: what cannot be read is a note of every attempt
            notes = list(self.notes)
            conversion, other_files, stuck, bridged = self._convert()
            # a file of the run would go on building them the Linen way, and break: they stay Linen
            # (again until none is left: ``held`` only grows)
            while stuck and self.together is None and not stuck.keys() <= self.held.keys():
                self.held = {**self.held, **stuck}
                self.notes = list(notes)
                self.__dict__.pop("_across", None)
                conversion, other_files, stuck, bridged = self._convert()
            return conversion, other_files, bridged
        except Exception as error:  # a bug here must not cost the file its own conversion
            note = f"the other files of the run are not updated ({type(error).__name__}: {error}); please report it"
            return self.single, OtherFiles(notes=(*self.notes, note)), ()

    def _convert(self) -> tuple["Conversion", OtherFiles, dict[str, str], tuple[str, ...]]:
        """The conversion, the other files' edits and notes, the converted classes that a
        file of the run builds and that the fix cannot update there (-> why), and the files
        that keep their Linen training code on bridged models."""
        from nnxlint.conversion.file import Conversion
        from nnxlint.conversion.models_only import ModelsOnly

        trained: dict[str, str] = {}  # path -> its converted training code
        if self.together is not None:  # converted with the Linen classes that use the file's
            converter, conversion, trained = self.together.converter, self.single, self.together.texts
        elif self._across is not None:
            converter, conversion, trained = self._across
        else:  # the file on its own, again: its converted classes are needed
            converter = self._models_converter()
            try:
                conversion = converter.run()
            except Unconvertible as error:  # (``held`` may have grown since ``single``)
                conversion = Conversion(reason=str(error), reasons=dict(converter.classes.reasons))
                return conversion, OtherFiles(notes=tuple(self.notes)), {}, ()
        notes = list(self.notes)
        if not conversion.converted:
            return conversion, OtherFiles(notes=tuple(notes)), {}, ()
        classes = {name: converter.classes.converted[name] for name in conversion.converted}
        partials = ModelsOnly(converter).partials()
        builders = {**{name: name for name in classes},
                    **{function: built for function, built in conversion.factories.items()},
                    **{alias: built for alias, built in partials.items() if built in classes}}
        # what ``getattr(models, name)`` may pick -> the converted class it builds, or why it is none
        offered = {**{name: name if name in classes else "stays Linen" for name in converter.linen_classes},
                   **{function: "is a factory function" for function in conversion.factories},
                   **{alias: built if built in classes else f"builds `{built}`, which stays Linen"
                      for alias, built in partials.items()}}
        edits = []
        bridged = []  # files that keep their Linen training code on the converted classes
        stuck: dict[str, str] = {}
        keep_linen_training = self.together is None and self._across is None
        for importer in self.importing:
            found = self._file(importer)
            if found is None:
                continue
            text = trained.get(importer.path, found.text)
            try:
                constructions = _Constructions(importer, builders, classes, converter.env,
                                               bridge=keep_linen_training, project=self.project, offered=offered,
                                               holding_linen=set(converter.bridged_passed))
                try:
                    after = constructions.rewrite(text)
                except Unconvertible:
                    # another file's training code converted; this one keeps its Linen ``init``/``apply``,
                    # or builds a model it cannot give the new arguments: it keeps a Linen module
                    if keep_linen_training or importer.path in trained:
                        raise
                    constructions = _Constructions(importer, builders, classes, converter.env, bridge=True,
                                                   project=self.project, offered=offered,
                                                   holding_linen=set(converter.bridged_passed))
                    after = constructions.rewrite(text)
            except (cst.ParserSyntaxError, Unconvertible) as error:
                if is_test_file(importer.path):  # it tests the Linen model: no conversion keeps it passing
                    notes.append(f"{importer.path} is not updated (a test of the Linen classes: rewrite it for "
                                 f"the NNX ones): {error}")
                    continue
                notes.append(f"{importer.path} is not updated: {error}")
                training = self.training_failures.get(importer.path)
                why = f"its training code is not converted ({training}), nor bridged: {error}" if training else error
                # a class picked by name may be any of them
                built = set(builders.values()) if constructions.picks_by_name else _built_classes(text, importer, builders)
                for name in built:
                    stuck.setdefault(name, f"{importer.path} builds it and cannot be updated: {why}")
                continue
            if after != found.text:
                edits.append(FileEdit(importer.path, found.text, after))
                if constructions.bridged:
                    bridged.append(importer.path)
                # updated, it uses no converted class as a Linen model (a test's ``init_with_output``)
                stale = f"the training code in {importer.path} is not converted:"
                notes = [note for note in notes if not note.startswith(stale)]
        if self.together is not None:  # files that import only the users converted with the file
            own = {importer.path for importer in self.importing}
            edits.extend(FileEdit(path, self.together.originals[path], text)
                         for path, text in self.together.texts.items() if path not in own)
            notes.extend(self.together.notes)
        if bridged:
            notes.append(to_linen.NOTE.format(files=", ".join(bridged)))
        return conversion, OtherFiles(tuple(edits), tuple(dict.fromkeys(notes))), stuck, tuple(bridged)

    def _with_training(self):
        """The conversion with the training code of the one importer that calls ``init``
        on a class of the file; None when there is none or it cannot be converted."""
        from nnxlint.conversion.file import FileConverter
        from nnxlint.conversion.models_only import ModelsOnly

        for importer in self.importing:
            try:
                if not _INIT_CALL.search(read_source(importer.path).text):  # no training file: not parsed
                    continue
            except SourceError:
                continue
            found = self._file(importer)
            if found is None:
                continue
            models = self._models_converter()
            factories = ModelsOnly(models).factories()  # ``def create(...): return Net(...)`` -> ``Net``
            training = FileConverter(found.module, names.collect_scope(found.module, None), importer.path)
            training.env.imported_classes = {spelling: factories.get(name, name)
                                             for spelling, name in importer.spellings.items()
                                             if name in models.linen_classes or name in factories}
            training.factory_spellings = {spelling for spelling, name in importer.spellings.items()
                                          if name in factories}
            training.project = self.project
            training.classes = models.classes
            try:
                if training.linen_classes:
                    raise Unconvertible("it defines Linen classes of its own")
                held = next((name for name in training.env.imported_classes.values() if name in self.held), None)
                if held is not None:
                    raise Unconvertible(f"`{held}` stays Linen: {self.held[held]}")
                replacements = training.convert_training()
                if models.env.custom_collections:
                    raise Unconvertible("the model has variable collections of its own "
                                        f"({', '.join(sorted(models.env.custom_collections))})")
                conversion = models.models_only(f"its training code in {importer.path} is converted")
                missing = [name for name in training.env.imported_classes.values()
                           if name in models.classes.converted and name not in conversion.converted]
                if missing:
                    raise Unconvertible(f"`{missing[0]}` stays Linen: {conversion.reason_for(missing[0])}")
            except Unconvertible as error:
                if "(found 0)" not in str(error):  # a file without ``init`` of a model is no training file
                    self.notes.append(f"the training code in {importer.path} is not converted: {error}")
                    self.training_failures[importer.path] = str(error)
                continue
            return models, conversion, {importer.path: converted_text(found.module, replacements)}
        return None


_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_tests?\.py$)")


def is_test_file(path: str) -> bool:
    """``test_models.py``, ``models_test.py`` or a file under ``tests/``: a test of the
    Linen classes, which often checks what only Linen has (``variables['params']['Dense_0']``,
    a count of Linen submodules); a file that a fix cannot update otherwise keeps the
    classes it builds Linen."""
    return bool(_TEST_FILE.search(path.replace("\\", "/")))


def _built_classes(text: str, importer: Importer, builders: Mapping[str, str]) -> set[str]:
    """The converted classes that ``text`` (the importer's) names, itself or through a
    factory function."""
    return {builders[name] for spelling, name in importer.spellings.items()
            if name in builders and re.search(rf"(?<![\w.]){re.escape(spelling)}\b", text)}


class _Constructions:
    """Gives every construction of a converted class in one importing file the new
    arguments, or names what it cannot update."""

    def __init__(self, importer: Importer, builders: dict[str, str], classes: dict[str, ConvertedClass],
                 env=None, bridge: bool = False, project=None,
                 offered: Optional[Mapping[str, str]] = None, holding_linen: frozenset[str] = frozenset()) -> None:
        self.importer = importer
        self.project = project  # the run (``ProjectView``): where a model handed to a function is initialized
        self.builders = builders  # class or factory function -> the class it builds
        self.classes = classes
        self.env = env  # the models file's (``FileEnv``): a graph input's sizes
        self.bridge = bridge  # Linen training code stays: constructions go through ``nnx.bridge.to_linen``
        self.bridged = False  # whether ``rewrite`` bridged any
        self.picks_by_name = False  # whether the file picks a class of the models file by name (``getattr``)
        self.offered = offered or {}  # what such a pick may give -> the converted class it builds, or why none
        self.holding_linen = holding_linen  # the partials of those that pass a layer kept in ``nnx.bridge.ToNNX``

    def rewrite(self, text: str) -> str:
        module = cst.parse_module(text)
        scope = names.collect_scope(module, None)
        nnx = scope.local_name(FLAX_NNX)
        # ``y, _ = model.init_with_output(key, x)`` (tests): the model built where it is used, called
        rewritten, outputs, built = model_outputs(module, self, nnx or "nnx", self.env) \
            if self.env is not None and ".init_with_output(" in text else (module, [], [])
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        positions = wrapper.resolve(PositionProvider)
        plan = _Plan(self, module, text, scope, nnx or "nnx")
        module.visit(plan)
        moved = {id(node) for statement in built for node in walk(statement)}  # rewritten above
        bridging = self.bridge and plan.bridged  # the sites it cannot follow use bridged models instead
        if bridging:
            def keyed(streams: Optional[frozenset[str]]) -> bool:
                return bool(plan.init_keys) or (streams is not None and _initialized_elsewhere(
                    module, scope, plan, streams, self.project))

            plan.problems.extend(to_linen.problems(module, self.spelled, self.classes.values(), keyed,
                                                   plan.adapted_methods))
            plan.problems.extend(_bridged_attributes(module, {name for name, assign in plan.bridged_names
                                                              if id(assign) not in moved}))
        if plan.sized:
            plan.problems.extend(to_linen_sized.problems(module, scope, plan.nnx, bool(plan.adapted_methods),
                                                         plan.lazy))
        elif plan.bridged and plan.annotations and to_linen_sized.spelling(scope, "flax.linen", "linen")[0] is None:
            plan.problems.append((module, "the file binds `linen` to something other than `flax.linen`, which the "
                                          "annotations of bridged models would name"))
        if plan.bridged and plan.decoding:
            plan.problems.extend(to_linen_decoding.problems(module, scope, plan.nnx))
        problems = [f"{self.importer.path}:{positions[node].start.line}: {why}" for node, why in plan.problems
                    if id(node) not in moved]
        if problems or not bridging:  # a bridge that works takes the sites ``model_outputs`` cannot follow
            problems = [f"{self.importer.path}:{line}: {why}" for line, why in outputs] + problems
        if problems:
            raise Unconvertible("; ".join(problems))
        if built:  # the constructions of the rewritten text that still need ``rngs``
            code = rewritten.code
            module = cst.parse_module(code)
            plan = _Plan(self, module, code, names.collect_scope(module, None), nnx or "nnx")
            module.visit(plan)
        if not plan.calls and not plan.expressions and not built:
            return text
        self.bridged = plan.bridged
        # ``model: models.CNN`` holds a Linen module now (and NNX115 would take it for the NNX class)
        linen, add_linen = to_linen_sized.spelling(scope, "flax.linen", "linen")
        annotations = {id(node): f"{linen}.Module" for node in plan.annotations} if plan.bridged else {}
        new = module.visit(_Replace(plan.calls, annotations, plan.expressions))
        if annotations and add_linen:
            new = add_imports(new, {"flax.linen"})
        if plan.imports:
            new = add_imports(new, plan.imports)
        if plan.mode_helper:
            new = add_after_imports(new, to_linen.mode_helper(next(iter(plan.modes)), new))
        if plan.sized:
            new = to_linen_sized.with_helper(new, scope, nnx or "nnx", plan.lazy)
        if plan.bridged and plan.decoding:
            new = to_linen_decoding.with_helper(new, scope, nnx or "nnx")
        if nnx is None:
            new = add_imports(new, {FLAX_NNX})
        return new.code

    def module_aliases(self) -> set[str]:
        """The names the importer binds the models module to (``models`` of ``models.CNN``)."""
        return {spelling.rpartition(".")[0] for spelling in self.importer.spellings if "." in spelling}

    def spelled(self, module: cst.Module, node: cst.BaseExpression) -> Optional[str]:
        if isinstance(node, (cst.Name, cst.Attribute)):
            name = self.importer.spellings.get(module.code_for_node(node))
            return name if name in self.builders else None
        return None


def _initialized_elsewhere(module: cst.Module, scope: names.Scope, plan: "_Plan", streams: frozenset[str],
                           project) -> bool:
    """Whether the bridged models of the file (it calls no ``init`` on them), by their
    name or as built, are handed only to functions of other files of the run, each of
    which gives every one of ``streams`` a key in each ``init`` of its parameter
    (``model.init({'params': k1, 'lstm': k2}, x)``), and to at least one."""
    models = {name for name, _ in plan.bridged_names}
    if project is None:
        return False
    handed = False
    for node in walk(module):
        if not isinstance(node, cst.Call):
            continue
        for position, arg in enumerate(node.args):
            if not (isinstance(arg.value, cst.Name) and arg.value.value in models
                    or id(arg.value) in plan.bridged_constructions):
                continue
            found = project.lookup(names.resolve(scope, node.func) or "")
            if arg.star or found is None or found[0] != "function":
                return False
            path, _, function = found[1]
            if not _keys_streams(path, function, arg.keyword.value if arg.keyword else position, streams):
                return False
            handed = True
    return handed


def _keys_streams(path: str, function: str, parameter: Union[str, int], streams: frozenset[str]) -> bool:
    """Whether the top-level ``function`` of ``path`` calls ``init`` (or ``init_with_output``)
    on its ``parameter`` (a name or a position) and names all of ``streams`` in the key
    dict of each such call."""
    definition = _top_level_function(path, function)
    name = None if definition is None else _parameter_name(definition, parameter)
    if name is None:
        return False
    inits = [node for node in ast.walk(definition) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id == name
             and node.attr in ("init", "init_with_output")]
    calls = {id(node.func): node for node in ast.walk(definition) if isinstance(node, ast.Call)}
    for attribute in inits:
        call = calls.get(id(attribute))
        keys = call.args[0] if call is not None and call.args else None
        if not isinstance(keys, ast.Dict) or not streams <= {key.value for key in keys.keys
                                                              if isinstance(key, ast.Constant)}:
            return False
    return bool(inits)


def _partial_spelling(scope: names.Scope) -> tuple[Optional[str], bool]:
    """How the file spells ``functools.partial`` (``functools.partial``, ``ft.partial``,
    ``partial``), and whether ``import functools`` must be added for it; (None, False)
    when the name ``functools`` is taken."""
    module = scope.local_name("functools")
    if module is not None:
        return f"{module}.partial", False
    imported = scope.local_name("functools.partial")
    if imported is not None:
        return imported, False
    return (None, False) if "functools" in scope.bindings else ("functools.partial", True)


def _calls_parameter(path: str, function: str, parameter: Union[str, int]) -> bool:
    """Whether the top-level ``function`` of ``path`` calls its ``parameter`` (a name or a
    position): ``def create_model(*, model_cls, ...): return model_cls(num_classes=...)``."""
    definition = _top_level_function(path, function)
    name = None if definition is None else _parameter_name(definition, parameter)
    return name is not None and any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                                    and node.func.id == name for node in ast.walk(definition))


def _top_level_function(path: str, function: str) -> Optional[ast.FunctionDef]:
    try:
        tree = _parsed(read_source(path).text)
    except (SourceError, SyntaxError, ValueError):
        return None
    return next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function), None)


@lru_cache(maxsize=16)
def _parsed(text: str) -> ast.Module:
    """A file's ``ast``, parsed once however many of its functions a run looks up (keyed by
    the text, so a file rewritten since is parsed again)."""
    return ast.parse(text)


def _parameter_name(definition: ast.FunctionDef, parameter: Union[str, int]) -> Optional[str]:
    """The name of ``definition``'s parameter given by name or position, if it has one."""
    if isinstance(parameter, int):
        positional = [*definition.args.posonlyargs, *definition.args.args]
        return positional[parameter].arg if parameter < len(positional) else None
    params = [*definition.args.posonlyargs, *definition.args.args, *definition.args.kwonlyargs]
    return parameter if any(param.arg == parameter for param in params) else None


def _bridged_attributes(module: cst.Module, bridged: set[str]) -> list[tuple[cst.CSTNode, str]]:
    """``model.blank_input(2)`` on a model built through the bridge: it is a Linen module now."""
    return [(node, f"`{module.code_for_node(node)}` is no attribute of a Linen module: a model built through "
                   "the bridge offers Linen's (`init`, `apply`, ...), the construction is not bridged")
            for node in walk(module) if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name)
            and node.value.value in bridged and node.attr.value not in _BRIDGED_API]


class _Plan(cst.CSTVisitor):
    """Finds the constructions to update and the uses that stop the file's update."""

    def __init__(self, owner: _Constructions, module: cst.Module, text: str, scope: names.Scope, nnx: str) -> None:
        super().__init__()
        self.owner = owner
        self.module = module
        self.scope = scope
        self.nnx = nnx
        self.calls: dict[int, cst.Call] = {}  # id(call) -> the call with the new arguments
        self.problems: list[tuple[cst.CSTNode, str]] = []
        self.bridged = False
        self.init_keys: dict[int, cst.Call] = {}  # bridged: ``init`` calls given a ``default`` key
        self.linen_calls: list[cst.Call] = []  # bridged: ``apply``/``init`` calls, given the mode below
        self.modes: set = set()  # bridged: the train/eval arguments moved to ``train()``/``eval()``
        self.builds_linen = False  # whether the file builds Linen modules of its own
        self.mode_helper = False  # whether a call was given ``nnx_method=call_in_mode(...)``
        self.annotations: list[cst.Annotation] = []  # bridged: ``model: models.CNN``, a Linen module now
        self.bridged_names: list[tuple[str, cst.Assign]] = []  # bridged: ``model = ...``
        self.bridged_constructions: set[int] = set()  # id of each construction made a bridged model
        self.sized = False  # whether a construction reads its input sizes off the inputs (``to_linen_sized``)
        self.lazy = False  # whether one holds Linen layers in ``nnx.bridge.ToNNX`` (``to_linen_sized(lazy_init=)``)
        # whether the file threads a ``cache`` collection: bridged models decode (``to_linen_decoding``)
        self.decoding = owner.bridge and to_linen_decoding.decodes(module, text)
        self.adapted_methods: set[int] = set()  # calls whose ``method=`` became ``nnx_method=``
        self.imports: set[str] = set()  # what the new code needs imported (``functools``)
        self.expressions: dict[int, cst.BaseExpression] = {}  # id(class handed to a function) -> its factory
        self.seen_references: set[int] = set()
        self._linen_receivers = {match.group(1) for match in re.finditer(
            r"\b([A-Za-z_][A-Za-z0-9_]*)\.(?:%s)\(" % "|".join(_LINEN_METHODS), module.code)}

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "getattr" and node.args \
                and self.module.code_for_node(node.args[0].value) in self.owner.module_aliases():
            self.owner.picks_by_name = True
            self._pick_by_name(node)
            return
        built = self.owner.spelled(self.module, node.func)
        if built is None:
            if self.owner.bridge:  # a bridged model is a Linen module: Linen functions take it
                self._handed_classes(node)
                keyed = to_linen.with_default_key(node)
                if keyed is not None:
                    self.init_keys[id(node)] = keyed
                if isinstance(node.func, cst.Attribute) and node.func.attr.value in to_linen.LINEN_CALLS:
                    self.linen_calls.append(node)
                resolved = names.resolve(self.scope, node.func) or ""
                self.builds_linen |= is_linen(resolved) and resolved.rpartition(".")[2][:1].isupper()
                return
            if is_linen(names.resolve(self.scope, node.func) or "") and any(
                    self.owner.spelled(self.module, arg.value.func) for arg in node.args
                    if isinstance(arg.value, cst.Call)):
                self.problems.append((node, "a Linen function is given a converted model"))
            return
        self.seen_references.add(id(node.func))
        spelling = self.module.code_for_node(node.func)
        if any(arg.keyword is not None and arg.keyword.value == "rngs" for arg in node.args):
            return  # already built the NNX way
        converted = self.owner.classes[self.owner.builders[built]]
        sizes = [*converted.size_params, *converted.layer_size_params]
        read_off_inputs = self._sizes_function(built, converted) if sizes else None
        if sizes and not isinstance(read_off_inputs, cst.Lambda):
            self.problems.append((node, f"`{spelling}(...)` must pass the input size "
                                        f"{', '.join(f'`{size}`' for size in sizes)}, which is not known here"
                                        + (f" ({read_off_inputs})" if read_off_inputs else "")))
            return
        if self.owner.bridge:
            bridged = to_linen.bridged(node, self.nnx, converted, read_off_inputs, self.decoding)
            self.sized |= read_off_inputs is not None
            if isinstance(bridged, str):
                self.problems.append((node, bridged))
            else:
                self.calls[id(node)] = bridged
                self.bridged_constructions.add(id(node))
                self.bridged = True
                mode = to_linen.moved_mode(converted)
                if mode is not None:
                    self.modes.add(mode)
            return
        if converted.uses_rngs:
            rngs = cst.Arg(cst.parse_expression(f"{self.nnx}.Rngs({SEED})"), keyword=cst.Name("rngs"),
                           equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            args = list(node.args)
            if args:
                args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            self.calls[id(node)] = node.with_changes(args=[*args, rngs])

    def _pick_by_name(self, node: cst.Call) -> None:
        """``getattr(models, config.model)``: the bridged factory (``constructs/picked_by_name.py``)
        where the training code stays Linen; a problem otherwise."""
        why = (f"`{self.module.code_for_node(node)}` picks a class of the models file by name: that "
               "construction must get the new arguments by hand")
        bridged = self._bridged_factory(node, self.owner.offered) if self.owner.bridge and self.owner.offered \
            else "the training code does not stay Linen"
        if isinstance(bridged, str):
            self.problems.append((node, f"{why} ({bridged})"))
        else:
            self.calls[id(node)] = bridged

    def _handed_classes(self, call: cst.Call) -> None:
        """``train.create_model(model_cls=models._ResNet1)``: a converted class handed to a
        function of the run that builds it, in a file whose training code stays Linen, is
        handed over as the bridged factory, as a pick by name is."""
        for arg in call.args:
            built = None if arg.star else self.owner.spelled(self.module, arg.value)
            if built is None or self.owner.offered.get(built) not in self.owner.classes:
                continue
            function = self._function_of_run(call.func)
            if function is None or not _calls_parameter(
                    *function, arg.keyword.value if arg.keyword else call.args.index(arg)):
                continue
            bridged = self._bridged_factory(arg.value, {built: self.owner.offered[built]})
            if not isinstance(bridged, str):
                self.expressions[id(arg.value)] = bridged
                self.seen_references.add(id(arg.value))

    def _function_of_run(self, func: cst.BaseExpression) -> Optional[tuple[str, str]]:
        """(path, name) of the top-level function that ``func`` names: of this file, or of
        another file of the run; None for anything else."""
        if isinstance(func, cst.Name) and any(isinstance(statement, cst.FunctionDef)
                                              and statement.name.value == func.value
                                              for statement in self.module.body):
            return self.owner.importer.path, func.value
        found = self.owner.project.lookup(names.resolve(self.scope, func) or "") \
            if self.owner.project is not None else None
        return (found[1][0], found[1][2]) if found is not None and found[0] == "function" else None

    def _bridged_factory(self, picked: cst.BaseExpression, offered: Mapping[str, str]) -> Union[cst.Call, str]:
        """``functools.partial(to_linen_sized, picked, sizes)`` for an expression that gives
        one of ``offered`` (name -> the converted class it builds, or why none), or why not;
        what the new code needs (the helper, the mode, imports) is noted for ``rewrite``."""
        if self.decoding:
            return "the file decodes through a `cache` collection"
        partial, import_functools = _partial_spelling(self.scope)
        if partial is None:
            return "the file binds `functools` to something other than the module"
        candidates = {name: self.owner.classes.get(built, built) for name, built in offered.items()}
        sizes = {name: to_linen_sized.sizes_function(converted)
                 if isinstance(converted, ConvertedClass) and (converted.size_params or converted.layer_size_params)
                 else None for name, converted in candidates.items()}
        bridged = picked_by_name.picked(picked, self.module, candidates, sizes, partial, self.owner.holding_linen)
        if isinstance(bridged, str):
            return bridged
        factory, lazy = bridged
        self.bridged = self.sized = True
        self.lazy |= lazy
        self.imports |= {"functools"} if import_functools else set()
        self.modes.update(mode for mode in map(to_linen.moved_mode, candidates.values()) if mode is not None)
        return factory

    def _sizes_function(self, built: str, converted: ConvertedClass) -> Union[cst.Lambda, str, None]:
        """For a bridged construction: the function reading its input sizes off the inputs
        (``constructs/to_linen_sized.py``), or why there is none."""
        if not self.owner.bridge:
            return None
        if self.owner.builders[built] != built:
            return "built through a factory function or a `partial`"
        env = self.owner.env
        return to_linen_sized.sizes_function(converted, None if env is None else (
            lambda index, parameter, size: graph_runtime_size(env, converted.name, index, parameter, size)))

    def visit_Attribute(self, node: cst.Attribute) -> Optional[bool]:
        if self.owner.bridge:
            return None
        if isinstance(node.value, cst.Call) and node.attr.value in _LINEN_METHODS \
                and self.owner.spelled(self.module, node.value.func):
            self.problems.append((node, f"`{self.module.code_for_node(node.value.func)}(...).{node.attr.value}` "
                                        "uses it as a Linen model"))
        return None

    def leave_Assign(self, original_node: cst.Assign) -> None:
        if id(original_node.value) in self.bridged_constructions:  # ``model = nnx.bridge.to_linen(...)``
            self.bridged_names.extend((target.target.value, original_node) for target in original_node.targets
                                      if isinstance(target.target, cst.Name))

    def visit_Assign(self, node: cst.Assign) -> None:
        if self.owner.bridge:
            return
        if isinstance(node.value, cst.Call) and self.owner.spelled(self.module, node.value.func) \
                and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name) \
                and node.targets[0].target.value in self._linen_receivers:
            self.problems.append((node, f"`{node.targets[0].target.value}` is used as a Linen model "
                                        "(`init`/`apply`)"))

    def visit_Annotation(self, node: cst.Annotation) -> None:
        built = self.owner.spelled(self.module, node.annotation)
        if self.owner.bridge and built is not None and self.owner.builders[built] == built:
            self.annotations.append(node)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        """``class DenseExplicit(Dense)`` converted with it (``constructs/explicit_subclass.py``:
        its ``__init__`` hands the arguments to ``super().__init__``): a base, no construction."""
        if "super().__init__(" in self.module.code_for_node(node):
            self.seen_references.update(id(base.value) for base in node.bases)

    def leave_Module(self, original_node: cst.Module) -> None:
        """Any other reference (a subclass, ``partial(CNN, ...)``, ``isinstance``) is no call to update."""
        if self.bridged:
            self.calls.update(self.init_keys)
            to_linen.adapt_calls(self, original_node)
        for node in _references(original_node):
            if id(node) not in self.seen_references and self.owner.spelled(self.module, node) is not None:
                self.problems.append((node, f"`{self.module.code_for_node(node)}` is used other than by "
                                            "constructing it"))


def _references(module: cst.Module) -> list[cst.BaseExpression]:
    """Every Name and Attribute expression outside import statements and annotations
    (``models.CNN`` and its ``models``; not the ``CNN`` of the attribute on its own): an
    annotation ``model: models.CNN`` holds for the converted class too."""
    found: list[cst.BaseExpression] = []

    class Collect(cst.CSTVisitor):
        def visit_Annotation(self, node) -> bool:
            return False

        def visit_Import(self, node) -> bool:
            return False

        def visit_ImportFrom(self, node) -> bool:
            return False

        def visit_Attribute(self, node: cst.Attribute) -> bool:
            found.append(node)
            node.value.visit(self)
            return False

        def visit_Name(self, node: cst.Name) -> None:
            found.append(node)

    module.visit(Collect())
    return found


class _Replace(cst.CSTTransformer):
    def __init__(self, calls: dict[int, cst.Call], annotations: Optional[dict[int, str]] = None,
                 expressions: Optional[dict[int, cst.BaseExpression]] = None) -> None:
        super().__init__()
        self.calls = calls
        self.annotations = annotations or {}  # id(annotation) -> its new expression
        self.expressions = expressions or {}  # id(a class handed to a function) -> its bridged factory

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        return self.expressions.get(id(original_node), updated_node)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self.expressions.get(id(original_node), updated_node)

    def leave_Annotation(self, original_node: cst.Annotation, updated_node: cst.Annotation) -> cst.Annotation:
        new = self.annotations.get(id(original_node))
        return updated_node if new is None else updated_node.with_changes(annotation=cst.parse_expression(new))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        new = self.calls.get(id(original_node))
        if new is None:
            return updated_node
        if new.func is not original_node.func:  # bridged: ``nnx.bridge.to_linen(Class, ...)``
            return new
        return updated_node.with_changes(args=new.args)

"""A models file's classes converted together with the Linen classes of other files that use them.

A Linen module cannot hold an NNX one, so a class that a Linen class of another file of the
run builds (``model.py``'s ``Net`` uses ``layers.py``'s ``Block``) converts only together with
that user.  The models file is converted first; each file whose Linen classes use its classes
is then converted knowing the converted ones (``FileEnv.foreign_classes``: the models file's
``ClassSet`` gives their constructors -- input-size parameters, ``rngs`` -- as it gives those
of a class of the file itself), and its other constructions of them are updated as any
importer's.  When every such user converts, the models file's fix writes them all
(``rule.OtherFiles``: all files or none); otherwise the used classes stay Linen and the reason
names the user that does not convert.

``nnxlint check`` pays for this only where a Linen class of another file uses one of the
file's classes; a user that subclasses one converts in its own file's run
(``constructs/explicit_subclass.py``: the explicit-init style only).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import libcst as cst

from nnxlint import names
from nnxlint.textio import SourceError, read_source
from nnxlint.conversion.base import ConvertedClass, Unconvertible
from nnxlint.conversion.constructs.param_override import converted_override, override_names
from nnxlint.conversion.file import Conversion, FileConverter, convert_file
from nnxlint.conversion.project_files import Importer, _Constructions, _spellings_in, importers
from nnxlint.conversion.validate import converted_text


_MAX_CHAIN = 8  # files of Linen classes using each other, one after the other (an import cycle stops there)


@dataclass(frozen=True)
class ForeignClass:
    """A Linen class of another file that a class of this file builds."""

    node: cst.ClassDef
    convert: Callable[..., ConvertedClass]  # (inputs, factories) -> its conversion there


@dataclass(frozen=True)
class _User:
    importer: Importer
    name: str  # the Linen class of the importing file
    uses: tuple[str, ...]  # the models file's classes it uses


@dataclass
class Together:
    """The models file's conversion and the converted text of each file whose Linen classes use it."""

    converter: FileConverter
    texts: dict[str, str] = field(default_factory=dict)  # path -> converted text (users and their importers)
    originals: dict[str, str] = field(default_factory=dict)  # path -> the text it was converted from
    users: dict[str, list[str]] = field(default_factory=dict)  # path -> its classes converted with the file
    # path -> (converter, conversion) of each file converted in this fix, the models file first: the
    # classes a file further down the chain may build (``_convert_file``)
    sources: dict[str, tuple[FileConverter, Conversion]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the users' own importers could not get


def convert_with_users(module: cst.Module, scope: names.Scope, path: str, project,
                       importing: Sequence[Importer]) -> tuple[Conversion, dict[str, str], Optional[Together]]:
    """The file's conversion, the classes held Linen by users that do not convert (with the
    reason), and the users converted with it (None when there are none or one fails)."""
    users = _linen_users(project, importing)
    if not users:
        return convert_file(module, scope, path, project=project), {}, None
    converter = FileConverter(module, scope, path, project=project)
    try:
        conversion = converter.run()
    except Unconvertible as error:
        conversion = Conversion(reason=str(error), reasons=dict(converter.classes.reasons))
    users = _building_users(users, converter, conversion)
    if not users:  # they use only the file's other functions (``default_init()``): nothing to convert with it
        return conversion, {}, None
    together = Together(converter)
    failure = _convert_users(project, users, converter, conversion, together)
    if failure is None:
        return conversion, {}, together
    held = {}
    for user in sorted(users, key=lambda user: user is not failure[0]):  # the failing user's reason first
        failing = failure[0]
        why = f": {failure[1]}" if user is failing else (
            f"; this class converts only with every Linen class that uses it, and `{failing.name}` of "
            f"{failing.importer.path} does not")
        for used in user.uses:
            held.setdefault(used, f"`{user.name}` of {user.importer.path}, a Linen class, uses it{why}")
    return convert_file(module, scope, path, held, project), held, None


def _linen_users(project, importing: Sequence[Importer]) -> list[_User]:
    """The Linen classes of importing files that use the file's classes (``ast``, no conversion)."""
    from nnxlint.project import LINEN

    found = []
    for importer in importing:
        facts = project.index.by_path.get(importer.path) or {}
        linen = set()
        for name in facts.get("classes", ()):
            info = project.index.class_info(f"{facts['module']}.{name}", facts["root"])
            if info is not None and info.kind == LINEN:
                linen.add(name)
        if not linen:
            continue
        try:
            tree = ast.parse(read_source(importer.path).text)
        except (SourceError, SyntaxError, ValueError, RecursionError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in linen:
                uses = _spellings_in(node, importer.spellings)
                if uses:
                    found.append(_User(importer, node.name, tuple(uses)))
    return found


def _building_users(users: list[_User], converter: FileConverter, conversion: Conversion) -> list[_User]:
    """The users that build a Linen class of the file, themselves or through a factory function
    of the file that builds one; a user of only its other functions (an initializer) is none."""
    building = []
    overrides = set(override_names(converter.env))
    for user in users:
        uses = tuple(name for name in user.uses if name in converter.linen_classes or name in conversion.factories
                     or name in overrides)
        if uses:
            building.append(_User(user.importer, user.name, uses))
    return building


def _convert_users(project, users: list[_User], converter: FileConverter, conversion: Conversion,
                   together: Together) -> Optional[tuple[_User, str]]:
    """Converts each importing file with the users in it into ``together``, then the files whose
    Linen classes use the classes converted so, and so on down the chain (``layers.py`` <-
    ``model.py`` <- ``heads.py``); the first user of the file that does not convert, with why
    (for a user further down: its reason, named), or None."""
    together.sources[converter.path] = (converter, conversion)
    level: dict[str, list[_User]] = {}
    for user in users:
        level.setdefault(user.importer.path, []).append(user)
    roots = {path: in_file[0] for path, in_file in level.items()}  # the file's user each chain starts from
    for depth in range(_MAX_CHAIN):
        onward: dict[str, list[_User]] = {}
        for path, in_file in level.items():
            try:
                found = _convert_file(project, path, [user.name for user in in_file], together)
            except Unconvertible as error:
                if depth == 0:  # a user of the file itself
                    return next((user for user in in_file if f"`{user.name}`" in str(error)), in_file[0]), str(error)
                return roots[path], f"in {path}, whose Linen classes use classes this fix converts, {error}"
            for user in found:
                onward.setdefault(user.importer.path, []).append(user)
                roots.setdefault(user.importer.path, roots[path])
        level = {path: in_file for path, in_file in onward.items() if path != converter.path}
        if not level:
            return None
    return next(iter(roots.values())), f"Linen classes use each other over more than {_MAX_CHAIN} files"


def _convert_file(project, path: str, user_names: list[str], together: Together) -> list[_User]:
    """One file converted knowing the classes of every file converted so far in this fix
    (``together.sources``), with the files of the run that import it in turn (its own
    ``ProjectConversion``), into ``together``; the Linen classes of other files that use
    its converted classes (the next link of the chain)."""
    from nnxlint.conversion.project_files import ProjectConversion, trains_elsewhere

    try:
        text = read_source(path).text
        module = cst.parse_module(text)
    except (SourceError, cst.ParserSyntaxError, RecursionError) as error:
        raise Unconvertible(f"{path} cannot be read or parsed ({error})") from None
    scope = names.collect_scope(module, None)
    foreign: dict[str, ForeignClass] = {}
    overrides: dict = {}  # ``models_resnet.StdConv`` -> its ParamOverride (None: its file does not convert it)
    rewrites = []  # each source's classes, as this file spells them: its constructions are updated
    for source_path, (source, source_conversion) in together.sources.items():
        importer = next((found for found in importers(project, source_path, _names_of(source))
                         if found.path == path), None)
        if source_path == path or importer is None:
            continue
        foreign.update({spelling: ForeignClass(source.linen_classes[name],
                                               _converter_of(name, source, source_conversion))
                        for spelling, name in importer.spellings.items() if name in source.linen_classes})
        source_overrides = set(override_names(source.env))
        overrides.update({spelling: converted_override(source.env, source.classes, name)
                          for spelling, name in importer.spellings.items() if name in source_overrides})
        classes = {name: source.classes.converted[name] for name in source_conversion.converted}
        rewrites.append((importer, {**{name: name for name in classes}, **source_conversion.factories}, classes,
                         source.env))
    user = FileConverter(module, scope, path, project=project)
    user.env.foreign_classes = foreign
    user.env.foreign_overrides = overrides
    try:
        result = user.run()
    except Unconvertible as error:
        result = Conversion(reason=str(error), reasons=dict(user.classes.reasons))
    importing = importers(project, path, _names_of(user))
    chain = {user.importer.path for user in _building_users(_linen_users(project, importing), user, result)}
    theirs = [importer for importer in importing if importer.path not in chain]  # converted whole, further down
    replacements, edits, own = result.replacements, (), result  # ``own``: the file's reasons, class by class
    if theirs:  # the user's classes are imported in turn: their constructions and training code follow
        across = ProjectConversion(module, scope, path, theirs, result, foreign=foreign, project=project,
                                   foreign_overrides=overrides, texts=together.texts)
        if trains_elsewhere(result, theirs):
            result = across.conversion
        if result.converted:
            replacements, files = across.replacements(), across.other_files()
            edits, result = files.edits, across.fixed()
            together.notes.extend(files.notes)
    missing = next((name for name in user_names if name not in result.converted), None)
    if missing is not None:
        raise Unconvertible(f"`{missing}` stays Linen: {own.reason_for(missing) or result.reason_for(missing)}")
    converted = converted_text(module, replacements)
    for importer, builders, classes, env in rewrites:
        converted = _Constructions(importer, builders, classes, env).rewrite(converted)
    together.originals.setdefault(path, text)
    together.texts[path] = converted
    together.users[path] = result.converted
    together.sources[path] = (user, result)
    for edit in edits:
        if edit.path not in together.sources:  # a file of the chain keeps its own conversion
            together.originals.setdefault(edit.path, edit.before)
            together.texts[edit.path] = edit.after
    return _building_users(_linen_users(project, importing), user, result)


def _names_of(converter: FileConverter) -> list[str]:
    """What other files may import from the converter's file to build its classes."""
    return list(converter.linen_classes) + override_names(converter.env) + [
        statement.name.value for statement in converter.module.body if isinstance(statement, cst.FunctionDef)]


def _converter_of(name: str, converter: FileConverter, conversion: Conversion) -> Callable[..., ConvertedClass]:
    def convert(inputs, factories=None) -> ConvertedClass:
        if name not in conversion.converted:
            raise Unconvertible(f"it stays Linen in {converter.path}: {conversion.reason_for(name)}")
        return converter.classes.convert(name, inputs, factories)
    return convert


def linen_sources(project, scope: names.Scope, path: str) -> dict[str, str]:
    """How this file spells Linen classes of other files of the run (``Block``, ``layers.Block``)
    -> the file that defines each (read from the index only)."""
    from nnxlint.project import LINEN

    found: dict[str, str] = {}
    if project is None:
        return found
    for local, bindings in scope.bindings.items():
        qualified = next((binding.qualified_name for binding in bindings if binding.qualified_name), None)
        target = project.lookup(qualified) if qualified else None
        if target is None or target[0] not in ("class", "module"):
            continue
        if target[0] == "class":
            candidates = {local: (qualified, target[1][0])}
        else:
            candidates = {f"{local}.{name}": (f"{qualified}.{name}", target[1][0]) for name in target[1][1]["classes"]}
        for spelling, (name, source) in candidates.items():
            if source != path and source in project.index.run_paths:
                info = project.class_info(name)
                if info is not None and info.kind == LINEN:
                    found[spelling] = source
    return found


def explained(reason: str, class_code: str, sources: dict[str, str]) -> str:
    """``reason``, telling where the class uses a Linen class of another file of the run:
    that file's fix converts both when it can."""
    used = next((spelling for spelling in sources if re.search(rf"(?<![\w.]){re.escape(spelling)}\b", class_code)),
                None)
    if used is None:
        return reason
    return (f"{reason}; it uses `{used}`, a Linen class of {sources[used]}, whose fix converts this class with "
            "it when every Linen class of the run that uses it can be converted")

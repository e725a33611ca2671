"""NNX002: a Linen Module class (and the unsafe whole-file conversion to NNX)."""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from nnxlint import timings
from nnxlint.flax_api import LINEN_MODULE_BASES
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid

_BEFORE = '''\
import jax
import jax.numpy as jnp
import flax.linen as nn


class MLP(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)


def predict(x):
    model = MLP(hidden=8)
    variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
    return model.apply(variables, x)
'''
_AFTER = '''\
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
        self.dense_0 = nnx.Linear(in_features, hidden, rngs=rngs)
        self.dense_1 = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.dense_0(x))
        return self.dense_1(x)


def predict(x):
    model = MLP(4, hidden=8, rngs=nnx.Rngs(0))
    return model(x)
'''


class LinenModule(Rule):
    """## What it does
    Flags every class that subclasses `flax.linen.Module` or the recurrent cells'
    base `flax.linen.RNNCellBase` (under any alias), or subclasses a Linen Module
    class of the same file, on the class line.

    ## Why is this bad?
    Linen modules are stateless descriptions whose variables live outside the
    object (`init`/`apply`, collections such as `params` and `batch_stats`);
    NNX modules own their state, build it eagerly in `__init__`, and train with
    `nnx.Optimizer` under `nnx.jit`. Each Linen class is a unit of migration work.

    ## Example
    ```python
    class MLP(nn.Module):
        hidden: int

        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(self.hidden)(x))
            return nn.Dense(1)(x)

    model = MLP(hidden=8)
    variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
    y = model.apply(variables, x)
    ```

    ## Use instead
    ```python
    class MLP(nnx.Module):
        def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
            self.dense_0 = nnx.Linear(in_features, hidden, rngs=rngs)
            self.dense_1 = nnx.Linear(hidden, 1, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.dense_0(x))
            return self.dense_1(x)

    model = MLP(4, hidden=8, rngs=nnx.Rngs(0))
    y = model(x)
    ```

    ## Fix safety
    Unsafe: the fix converts every Linen class of the file that can be converted
    exactly and, where the file trains them, the training code with it -- the
    `init`/`apply` calls, `TrainState` or optax state, the jitted training step
    (`nnx.jit`, `nnx.value_and_grad`, `nnx.Optimizer(..., wrt=nnx.Param)`) and
    the imports -- and the result starts from different random weights (NNX
    derives keys differently from Linen) and draws different dropout masks.
    Training code that cannot be followed into a model and an optimizer (a
    `TrainState` carried through `jax.lax.scan` in a tuple) stays as it is
    around `graphdef, params = nnx.split(model)` and `nnx.merge(graphdef,
    params)(x)` for each `apply`, for models whose variables are all parameters.
    Input sizes that Linen infers become constructor parameters (`in_features`)
    that parent modules and init sites pass, or numbers computed statically.
    Other files of the run that import the converted classes are rewritten with
    the file, all or none (a project-level fix): the one that calls `init` gets
    its training code converted, other constructions get `rngs=nnx.Rngs(0)`; a
    file that keeps Linen `init`/`apply`, or builds a class it cannot give the new
    arguments, builds the classes as Linen modules (`nnx.bridge.to_linen`;
    `to_linen_sized`, which the fix writes into the file to read input sizes off
    the first inputs; `to_linen_decoding`, which makes the attention caches of a
    file that decodes through a `cache` collection). A file that cannot be updated
    that way either keeps the classes it builds Linen, and their finding names it
    (a test file is named in a warning, to rewrite); code outside the run
    must pass the new parameters and `rngs=` (the fix description says so). Linen
    classes of other files that use the file's classes convert with them, in the same
    fix; where one cannot, the classes it uses stay Linen. A class that cannot
    be converted, and the classes tied to it, keep their finding with the reason;
    a converted file must compile, define every name it uses and get no NNX1xx
    finding, or there is no fix. Plain `nnxlint check` does not run the conversion
    (it is most of the rule's cost): each class is reported as a Linen class, and
    `--unsafe-fixes`, `--fix` or `--diff` say which classes convert and why the
    others do not. Submodule names follow
    `nnxlint.conversion.naming` (`Dense_0` -> `dense_0`), so `nnxlint.transplant` maps
    trained Linen variables onto the converted model. Train/eval flags become
    `model.train()` / `model.eval()`: NNX `Dropout` and `BatchNorm` default to
    train mode where Linen requires the flag.

    Constructs of large models (each verified from identical weights, see
    docs/linen-conversion.md): `nn.scan(nn.remat(Block), variable_axes={'params': 0},
    split_rngs={'params': True}, length=n)` -> the block stack built by `nnx.vmap`
    under `nnx.split_rngs` and applied by `nnx.scan(nnx.remat(Block.__call__), ...)`;
    `nn.remat(Block)(...)(x)` -> `nnx.remat(Block.__call__)(self.checkpoint_block_0, x)`;
    `for i in range(n): x = Block(...)(x)` -> an `nnx.List` built and indexed by the
    same loop; `nn.with_logical_partitioning(init, names)` ->
    `nnx.with_partitioning(init, names, eager_sharding=False)`; `embed = nn.Embed(...)`
    used as `embed(x)` and `embed.attend(y)` -> one attribute; attention's `decode=`
    as written (NNX's `init_cache` makes the `nnx.Cache` variables Linen's `init`
    made; Linen's `has_variable` test for `init` goes); decoding in the training
    file, `cache = decoder.init(key, x)['cache']` and `out, updates =
    decoder.apply({'params': p, 'cache': cache}, tok, mutable=['cache'])` -> the
    decode model built with fresh caches (`init_cache` for `x`'s batch and length),
    loaded with the trained weights and called as `decoder(tok)` (no fix where the
    cache passes through a function or is reordered); a layer given by a field
    or else made (`shared_embedding`), layers under branches on fields and `setup`
    with `if`s, `assert`s and aliases, made under the same tests;
    `nn.merge_param` -> the call value falling back on the attribute;
    `self.make_rng('dropout')` -> `self.dropout_rngs()`, a stream the module keeps;
    `rnn = nn.RNN(cell, return_carry=True, split_rngs={...})` called later with
    `initial_carry=`/`seq_lengths=` -> `rnn = nnx.RNN(self.cell_0, return_carry=True)`
    over the cell the module holds, a custom `nn.RNNCellBase` cell -> an
    `nnx.RNNCellBase` sized by its input and carry, drawing a new key per step from
    its stream (no fix where `split_rngs` gives a drawn stream one key for all steps);
    `nn.combine_masks` and the mask makers -> their `nnx` twins;
    `self.sow('intermediates', ...)` read back in the file's training code as
    `out, updates = model.apply(..., mutable=['intermediates'])` ->
    `self.sow(nnx.Intermediate, ...)` and `nnx.capture(model, nnx.Intermediate)(...)`
    (the model's other calls `nnx.capture(model)(...)`, which keep nothing);
    `apply(..., rngs={'noise': key})` -> a `noise` stream in `nnx.Rngs` whose
    counter draws a new key per call; a sow that no file of the run reads -> left
    out (Linen stores nothing then; NNX 0.12.8 would keep every value on the module
    outside `nnx.capture`), a comment showing the NNX form in its place; `nn.GRUCell` -> a
    subclass of `nnx.GRUCell` added to the file that keeps Linen's `hn` bias (inside
    the reset gate; `nnx.GRUCell` has no parameter for it);
    `nn.vmap(Head, variable_axes={'params': 0}, split_rngs={'params': True},
    axis_size=n)(...)(x)` (an ensemble) -> the copies built by `nnx.vmap` under
    `nnx.split_rngs` and applied by `nnx.vmap(Head.__call__, in_axes=(0, ...))`;
    `nn.vmap` with `variable_axes={'params': None}` (shared parameters) ->
    `nnx.vmap(Head.__call__, in_axes=(None, ...))` over the plain module;
    `nn.jit(Block)(...)(x)` -> the module itself (`nnx.jit` compiles the step);
    a submodule always called in eval mode (its train flag left to an eval default)
    -> `nnx.view(child, deterministic=True, use_running_average=True,
    raise_if_not_found=False)(x)`, so the parent's `train()` does not switch it;
    `x.dtype` of a value whose dtype is known (a layer given `dtype=`, `nn.Embed`)
    -> that dtype; `**inits` from a local keyword dict -> its keywords; a `Dropout`
    in a branch of a stack loop -> one per iteration; stack loops over `zip` of fields
    (a loop variable named like a field is renamed). Linen classes of other files
    that use the file's classes convert with them down a chain of files. No fix (the
    finding names the construct): `self.sow` whose collection a file of the
    run may read otherwise (named: `mutable=True`, more collections, another file,
    `capture_intermediates=`, `updates` used whole),
    `nn.vmap` with other options or `variable_axes` (`{'param': 0}` names no
    collection: Linen's own `init` fails), `nn.jit` with options, and
    `nn.remat` with options or
    `nn.scan` with other options (`metadata_params`, `unroll`, `reverse`, ...).
    """

    code = "NNX002"
    name = "linen-module"
    summary = "Flax Linen Module class"
    fixable = "unsafe"
    # it reports class statements only, whose bases resolve through the file's imports
    triggers = (Needs(uses=tuple(sorted(LINEN_MODULE_BASES)), words=("class",), imports_only=True),)
    valid = (
        Valid("from flax import nnx\nclass M(nnx.Module):\n    pass\n"),
        Valid("import flax.linen as nn\nclass Module:\n    pass\nclass M(Module):\n    pass\n"),
        Valid("from mylib import nn\nclass M(nn.Module):\n    pass\n"),
        Valid("import flax.linen as nn\nlayer = nn.Dense(3)\n"),
    )
    invalid = (
        Invalid(_BEFORE, fixed=_AFTER, unsafe=True, message="`MLP`"),
        Invalid("import flax.linen as nn\nclass M(nn.Module):\n    pass\n", message="no fix"),
        Invalid("from flax import linen\nclass A(linen.Module):\n    pass\nclass B(A):\n    pass\n", count=2),
        Invalid("import flax\nclass M(flax.linen.Module):\n    pass\n"),
        Invalid("from flax.linen import Module as Base\nclass M(Base):\n    pass\n"),
        Invalid("import flax.linen as nn\ndef f():\n    class Local(nn.Module):\n        pass\n"),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self._classes: list[cst.ClassDef] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        outer = self.context.scopes[-2] if len(self.context.scopes) > 1 else None
        known = {id(found) for found in self._classes}
        for base in node.bases:
            if self.context.resolve(base.value) in LINEN_MODULE_BASES or self._is_known_class(base.value, outer, known):
                self._classes.append(node)
                return

    @staticmethod
    def _is_known_class(base: cst.BaseExpression, scope, known: set[int]) -> bool:
        if not isinstance(base, cst.Name) or scope is None:
            return False
        binding = scope.lookup(base.value)
        return binding is not None and id(binding.node) in known

    def leave_Module(self, node: cst.Module) -> None:
        if not self._classes:
            return
        if not self.context.describe_fixes:  # plain check: the conversion is the costly part of a run
            for found in self._classes:
                self.report(found, f"{_message(found)} (`--unsafe-fixes` shows whether it converts)",
                            fix_deferred=True)
            return
        fix: Optional[Fix] = None
        try:
            from nnxlint.conversion.constructs.param_override import layer_subclasses
            from nnxlint.conversion.linen_users import (  # heavy: only for files with Linen modules
                convert_with_users, explained, linen_sources)
            from nnxlint.conversion.models_only import partial_alias
            from nnxlint.conversion.project_files import importers

            # the files of the run that import this one; the Linen classes among them that use
            # its classes convert with it, or hold them Linen
            wanted = [found.name.value for found in self._classes] + layer_subclasses(node, self.context.resolve) + [
                statement.name.value for statement in node.body if isinstance(statement, cst.FunctionDef)] + [
                alias[0] for statement in node.body
                if (alias := partial_alias(statement, self.context.resolve)) is not None]
            importing = importers(self.context.project, self.context.path, wanted)
            with timings.stage("NNX002 conversion"):
                conversion, held, together = convert_with_users(
                    node, self.context.module_scope, self.context.path, self.context.project, importing)
        except Exception as error:  # a conversion bug must not hide the finding itself
            conversion = None
            failure = f"the conversion failed ({type(error).__name__}: {error}); please report it"
        else:
            with timings.stage("NNX002 conversion"):
                conversion, fix = self._fix(node, conversion, importing, held, together)
        sources = None  # Linen classes of other files of the run, read only for a class that stays
        for found in self._classes:
            message = _message(found)
            reason = failure if conversion is None else conversion.reason_for(found.name.value)
            if reason is not None and conversion is not None and sources is None:
                sources = linen_sources(self.context.project, self.context.module_scope, self.context.path)
            if reason is not None and sources:
                reason = explained(reason, node.code_for_node(found), sources)
            if reason is not None:
                message += f" (no fix: {reason})"
            self.report(found, message, fix if reason is None else None)

    def _fix(self, node: cst.Module, conversion, importing, held, together):
        """The conversion of this file and its fix; a project-level fix when other files
        of the run import its classes (read and updated here: a class that one of them
        would go on building the Linen way stays Linen, and the finding says why)."""
        from nnxlint.conversion.project_files import ProjectConversion

        if not importing:
            fix = Fix(_fix_description(conversion), "unsafe", conversion.replacements) \
                if conversion.converted and conversion.replacements else None
            return conversion, fix
        project = ProjectConversion(node, self.context.module_scope, self.context.path, importing, conversion, held,
                                    together, project=self.context.project)
        conversion = project.fixed()
        if not (conversion.converted and conversion.replacements):
            return conversion, None
        users = together.users if together is not None else {}
        return conversion, Fix(_fix_description(conversion, [found.path for found in importing], users,
                                                project.bridged_files), "unsafe",
                               project.replacements, other_files=project.other_files)


def _message(found: cst.ClassDef) -> str:
    return f"Linen Module class `{found.name.value}`: migrate to `nnx.Module`"


def _fix_description(conversion, importing: Sequence[str] = (), users: Optional[dict] = None,
                     bridged: Sequence[str] = ()) -> str:
    """What the fix converts, and what it asks of code outside the file (or, when other
    files of the run import its classes, outside the run)."""
    names = ", ".join(f"`{name}`" for name in conversion.converted)
    what = "the file" if conversion.with_training else f"{names}"
    text = f"convert {what} from Linen to NNX" + "".join(f" ({note})" for note in conversion.dropped)
    if users:
        text += " with the Linen classes of other files that use them (" + "; ".join(
            f"{', '.join(f'`{name}`' for name in classes)} of {path}" for path, classes in users.items()) + ")"
    if importing:
        files = ", ".join(importing)
        kept = f", or kept on them through `nnx.bridge.to_linen` ({', '.join(bridged)})" if bridged else ""
        return (f"{text}, with the files of the run that import them ({files}): their constructions get "
                f"the new arguments and their `init`/`apply` training code is converted{kept}; code outside the "
                "run that builds these classes must pass the new arguments (input sizes, `rngs=`)")
    sized = {name: sizes for name, sizes in conversion.size_parameters.items() if sizes}
    if sized and not conversion.with_training:
        parameters = "; ".join(f"`{name}` takes {', '.join(f'`{size}`' for size in sizes)}"
                               for name, sizes in sized.items())
        factories = "".join(f"; `{function}()` takes {', '.join(f'`{size}`' for size in sized[built])} "
                            "and `rngs` keyword-only and passes them on"
                            for function, built in conversion.factories.items() if built in sized)
        text += (f" (input sizes become constructor parameters: {parameters}{factories}; code outside this "
                 "file that builds these classes must pass them, and `rngs=`)")
    elif not conversion.with_training:
        text += " (code outside this file that builds these classes must pass `rngs=` and use them as NNX modules)"
    return text

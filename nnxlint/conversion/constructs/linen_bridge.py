"""Linen layers with no NNX twin, kept as Linen inside ``nnx.bridge.ToNNX``.

flax 0.12.8 has no locally connected convolution in ``flax.nnx``.  Rather than
leave every class that builds ``nn.ConvLocal`` (and every class tied to it)
Linen, the layer itself stays Linen, wrapped by the bridge, and the rest
converts (``linen_map.BRIDGED_LAYERS``: the layer, and the table layer whose
arguments and output shape it shares).  Built by the class itself
(``nn.ConvLocal(8, (3, 3))(x)`` under ``@nn.compact``, or in ``setup``), it
becomes an attribute built with Linen's own arguments::

    self.conv_local_0 = nnx.bridge.ToNNX(nn.ConvLocal(8, (3, 3)), rngs=rngs)

Handed in as a module-class value (``ResNet18Local = partial(ResNet,
conv=nn.ConvLocal)``, where ``ResNet``'s field defaults to the twin,
``conv: ModuleDef = nn.Conv``), the converted class calls its ``conv`` with
``nnx.Conv``'s arguments, so a factory generated before the partial takes them
and builds the bridged layer, and the partial passes it::

    def conv_local(in_features: int, out_features: int, *args, rngs: nnx.Rngs, **kwargs) -> nnx.bridge.ToNNX:
        return nnx.bridge.ToNNX(nn.ConvLocal(out_features, *args, **kwargs), rngs=rngs)

    ResNet18Local = partial(ResNet, ..., conv=conv_local)

A ``ToNNX`` layer has no variables until the model runs once under
``nnx.bridge.lazy_init`` (calling it before applies empty variables and fails):
the fix description says so, and an init site that the conversion rewrites gets
that call after the model's construction, in eval mode so that no batch
statistic moves (Linen's ``init`` moves none).  ``ToNNX`` keeps Linen's variable
names (``kernel``, ``bias``), so ``nnxlint.transplant`` loads a Linen checkpoint
into it like into any layer.

Refused, with the layer named: a bridged layer in a class built under a lifted
transform (``nn.scan``, ``nn.remat``) or stepped by a scanned ``__call__`` (its
variables would be created inside the transform), a layer handed in where the
field's default is not its twin (what the class calls it with would not be its
arguments), and an init site whose model holds one but whose ``init`` passes
``method=``, ``mutable=``, ``rngs=`` or starred arguments, or whose model has a
constant train/eval flag (the ``lazy_init`` call could not be written exactly:
the training code is not converted, with that reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, arg_keyword
from nnxlint.conversion.linen_map import BRIDGED_LAYERS, LAYERS
from nnxlint.conversion.naming import snake_case

if TYPE_CHECKING:
    from nnxlint.conversion.base import ConvertedClass, FileEnv, Slot
    from nnxlint.conversion.classes import ClassConverter


def bridged_construction(converter: "ClassConverter", slot: "Slot", layer: str, shapes: dict) -> str:
    """``nnx.bridge.ToNNX(nn.ConvLocal(features, (3, 3)), rngs=rngs)``: Linen's arguments
    in ``__init__`` terms, less ``name`` (the attribute is the name)."""
    if converter.scan is not None:
        raise Unconvertible(f"`nn.{layer}` (no NNX equivalent) in a cell stepped by a scanned `__call__`: kept "
                            "Linen through `nnx.bridge.ToNNX`, its variables would be created inside the scan")
    args = []
    for arg in slot.construction.args:
        keyword = arg_keyword(arg)
        if arg.star:
            raise Unconvertible(f"starred arguments to `nn.{layer}`")
        if keyword != "name":
            code = converter.init_code(arg.value, shapes)
            args.append(code if keyword is None else f"{keyword}={code}")
    converter.uses_rngs = True
    keep_bridged(converter, None, [layer], None)
    linen = converter.env.code(slot.construction.func)
    return f"{converter.env.nnx}.bridge.ToNNX({linen}({', '.join(args)}), rngs=rngs)"


def keep_bridged(converter: "ClassConverter", child: Optional[str], layers: list[str],
                 transform: Optional[str]) -> None:
    """Record the bridged layers of the class or of its child ``child``; refused under a
    lifted transform."""
    if layers and transform is not None:
        raise Unconvertible(f"`nn.{transform}` of `{child}`, which keeps `nn.{layers[0]}` (no NNX equivalent) "
                            f"Linen through `nnx.bridge.ToNNX`: its variables would be created inside the transform")
    converter.bridged.extend(layer for layer in layers if layer not in converter.bridged)


def handed_in_layer(env: "FileEnv", class_node: cst.ClassDef, field: str,
                    value: cst.BaseExpression) -> Optional[str]:
    """``partial(ResNet, conv=nn.ConvLocal)``: the bridged layer handed in, when the class's
    field defaults to its twin (``conv: ModuleDef = nn.Conv``); None for any other value.
    Raises with the reason for a bridged layer the class would call with other arguments."""
    member = env.linen_member(value)
    if member not in BRIDGED_LAYERS:
        return None
    twin = BRIDGED_LAYERS[member]
    defaults = [statement.body[0].value for statement in class_node.body.body  # type: ignore[union-attr]
                if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.AnnAssign) and statement.body[0].value is not None
                and isinstance(statement.body[0].target, cst.Name) and statement.body[0].target.value == field]
    if len(defaults) != 1 or env.linen_member(defaults[0]) != twin:
        raise Unconvertible(f"`nn.{member}` has no NNX equivalent; it stays Linen through `nnx.bridge.ToNNX` only "
                            f"where the field `{field}` defaults to `nn.{twin}` (whose NNX arguments the converted "
                            "class calls it with)")
    return member


def factory_statement(env: "FileEnv", name: str, layer: cst.BaseExpression, module: cst.Module) -> cst.FunctionDef:
    """The generated factory that builds the bridged layer from its twin's NNX arguments."""
    member = env.linen_member(layer)
    twin = LAYERS[BRIDGED_LAYERS[member]]  # type: ignore[index]
    output = twin.renamed.get(twin.output_size or "", twin.output_size)
    nnx, linen, newline, indent = env.nnx, env.code(layer), module.default_newline, module.default_indent
    text = (f"def {name}({twin.input_size}: int, {output}: int, *args, rngs: {nnx}.Rngs, **kwargs) -> "
            f"{nnx}.bridge.ToNNX:{newline}"
            f'{indent}"""`{linen}`, which has no NNX equivalent, kept Linen inside `{nnx}.bridge.ToNNX`.{newline}'
            f"{newline}"
            f"{indent}Takes the arguments of `{nnx}.{twin.nnx}` (Linen infers `{twin.input_size}`). A model holding "
            f"one must{newline}"
            f"{indent}run once under `{nnx}.bridge.lazy_init(model, example_input)` before use (before "
            f"`{nnx}.Optimizer`).{newline}"
            f'{indent}"""{newline}'
            f"{indent}return {nnx}.bridge.ToNNX({linen}({output}, *args, **kwargs), rngs=rngs){newline}")
    statement = cst.parse_statement(text, config=module.config_for_parsing)
    assert isinstance(statement, cst.FunctionDef)
    return statement


def factory_name(layer: str) -> str:
    """``ConvLocal`` -> ``conv_local``."""
    return snake_case(layer)


def bridge_note(layers: list[str], passed_by: dict[str, tuple[str, str]], nnx: str,
                with_training: bool = False) -> list[str]:
    """The fix description's sentence on the layers kept Linen (none: no sentence); ``layers``: those
    the converted classes build; ``passed_by``: partial -> (the generated factory it passes, its layer);
    ``with_training``: the file's init site is converted (and gets the ``lazy_init``)."""
    layers = list(dict.fromkeys([*layers, *(layer for _, layer in passed_by.values())]))
    if not layers:
        return []
    kept = ", ".join(f"`nn.{layer}`" for layer in layers)
    partials: dict[str, list[str]] = {}  # factory -> the partials passing it
    for partial, (factory, _) in passed_by.items():
        partials.setdefault(factory, []).append(f"`{partial}`")
    where = "".join(f"; {', '.join(names)} {'pass' if len(names) > 1 else 'passes'} the generated `{factory}`, "
                    "which builds it" for factory, names in partials.items())
    return [f"{kept} has no NNX equivalent and stays a Linen layer inside `{nnx}.bridge.ToNNX`{where}: a model "
            f"holding one must run once under `{nnx}.bridge.lazy_init(model, example_input)` before use (before "
            f"`{nnx}.Optimizer`): " + ("the converted init site does so where its model holds one, other code that "
                                        "builds one must add it" if with_training else
                                        "code that builds one must add it")]


def lazy_init_lines(model: str, init_call: cst.Call, converted: "ConvertedClass", env: "FileEnv") -> list[str]:
    """The lines after ``model = Net(...)`` at an init site whose model holds a bridged layer: the
    Linen layers' variables created from the example input, in eval mode (no batch statistic moves)."""
    if not converted.bridged:
        return []
    mode = converted.mode
    inputs = []
    for index, arg in enumerate(init_call.args[1:]):  # after the key; the train/eval flag is the mode's
        keyword = arg_keyword(arg)
        if mode is not None and (keyword == mode.name or keyword is None and index == mode.index):
            continue
        if arg.star or keyword in ("method", "mutable", "rngs", "capture_intermediates"):
            raise Unconvertible(f"`{env.code(init_call.func)}(...)` passes `{keyword or '*'}`, and the model keeps "
                                f"`nn.{converted.bridged[0]}` Linen through `nnx.bridge.ToNNX`, which must be "
                                "initialised by calling the model on the example input")
        code = env.code(arg.value)
        inputs.append(code if keyword is None else f"{keyword}={code}")
    nnx = env.nnx
    lazy_init = f"{nnx}.bridge.lazy_init({model}, {', '.join(inputs)})  # creates the variables of the ToNNX layers"
    if converted.mode is None:
        return [lazy_init]
    if converted.constant_flags:
        raise Unconvertible(f"the model keeps `nn.{converted.bridged[0]}` Linen through `nnx.bridge.ToNNX` and a "
                            "layer with a constant train/eval flag, which the `eval()` around its `lazy_init` "
                            "would override")
    return [f"{model}.eval()", lazy_init, f"{model}.train()"]


def bridge_partials(converter, new: dict) -> dict[str, tuple[str, str]]:
    """The partials that hand a bridged layer to a converted class pass the generated
    factory instead, defined right above the first of them; partial -> (factory, layer)."""
    env, module = converter.env, converter.module
    factories: dict[str, str] = {}  # Linen layer -> its factory
    passed: dict[str, tuple[str, str]] = {}
    for statement, owner in converter.bridged_partials.items():
        converted = converter.classes.converted.get(owner)
        if converted is None:
            continue  # it stays Linen, and the partial is right as written
        assign = statement.body[0]
        defaults = {field.name: field.default for field in converted.fields}
        args = list(assign.value.args)
        added: list[cst.BaseStatement] = []
        for index, arg in enumerate(args):
            member = env.linen_member(arg.value) if arg.keyword is not None else None
            if member not in BRIDGED_LAYERS:
                continue
            twin = f"{env.nnx}.{LAYERS[BRIDGED_LAYERS[member]].nnx}"
            if defaults.get(arg.keyword.value) != twin:  # what the converted class builds with its field
                raise Unconvertible(f"`{owner}`'s field `{arg.keyword.value}` does not default to `{twin}` once "
                                    f"converted, so `nn.{member}` cannot be handed to it through the bridge")
            if member not in factories:
                factories[member] = converter._free_name(factory_name(member))
                added.append(factory_statement(env, factories[member], arg.value, module))
            args[index] = arg.with_changes(value=cst.Name(factories[member]))
            passed[env.code(assign.targets[0].target)] = (factories[member], member)
        current = new.get(statement, statement)
        rewritten = current.with_changes(body=[current.body[0].with_changes(value=assign.value.with_changes(args=args))])
        if added:  # the factories take the partial's blank lines; two more separate them from it (PEP 8)
            added[0] = added[0].with_changes(leading_lines=statement.leading_lines)
            rewritten = rewritten.with_changes(leading_lines=[cst.EmptyLine(indent=False)] * 2)
            new[statement] = cst.FlattenSentinel([*added, rewritten])
        else:
            new[statement] = rewritten
    return passed


def bridged_linen_reads(node: cst.CSTNode, local: str, nnx: str) -> int:
    """Reads of the Linen module ``local`` that build a bridged layer inside ``nnx.bridge.ToNNX(...)``
    (or the generated factory): Linen kept on purpose, unlike a Linen layer left behind."""
    module = cst.Module([])
    count = 0
    for found in walk(node):
        if isinstance(found, cst.Call) and module.code_for_node(found.func) == f"{nnx}.bridge.ToNNX" and found.args:
            count += sum(1 for read in walk(found.args[0].value)
                         if isinstance(read, cst.Attribute) and isinstance(read.value, cst.Name)
                         and read.value.value == local and read.attr.value in BRIDGED_LAYERS)
    return count

"""Converted classes built by Linen training code, through ``nnx.bridge.to_linen``.

When the model file converts and no training code of the run does (``train.py``
keeps ``model.init``, ``model.apply``, ``TrainState.create(apply_fn=model.apply)``),
every construction of a converted class in the files of the run becomes a Linen
module that holds the NNX class::

    model = models.TextClassifier(embedding_size=32, ...)
    ->
    model = nnx.bridge.to_linen(models.TextClassifier, embedding_size=32, ..., metadata_fn=None)

``init`` builds the NNX model with ``nnx.Rngs`` made from init's keys and returns
its variables as Linen collections (``nnx.Param`` in ``params``, ``nnx.BatchStat``
in ``batch_stats``), plain arrays (``metadata_fn=None``) as Linen's are; ``apply``
loads them into a fresh model and calls it (``rngs={'dropout': key}`` becomes its
``dropout`` stream; ``mutable=['batch_stats']`` returns the moved statistics).  So
the training code runs unchanged on the converted model, a step on the way to
converting it too.  The parameters are named by the NNX attributes
(``linear_0/kernel``, not ``Dense_0/kernel``): a Linen checkpoint loads into them
through ``nnxlint.transplant``.  A class that does not take ``rngs`` gets
``skip_rng=True``.

A Linen ``__call__`` argument that the conversion moved to ``model.train()`` /
``eval()`` (``train``, ``deterministic``) is no argument of the NNX ``__call__``: each
``apply``/``init`` call of the file passes it to a function written after the imports,
which sets the mode and calls the model (``ToLinen`` runs ``nnx_method`` on the model
it builds)::

    model.apply({'params': p}, x, train=True, rngs={'dropout': key})
    ->
    model.apply({'params': p}, x, nnx_method=call_in_mode(True), rngs={'dropout': key})

A call that leaves the argument out passes its default.  ``init`` runs the model in eval
mode whatever it is given: ``ToLinen`` keeps the variables built before the call and drops
its output, and Linen's ``BatchNorm`` skips its mean over devices (``axis_name``) while
initializing, where the NNX one skips it only in eval mode (``init`` runs outside ``pmap``).
A class picked by name (``getattr(models, config.model)``) is bridged where it is picked
(``constructs/picked_by_name.py``).

A class that takes input sizes the construction does not know is built through
``to_linen_sized`` instead (``constructs/to_linen_sized.py``), which reads them off
the inputs.  Refused, with the site named (the file is then left as it is, and the
fix says so): a moved train/eval argument passed by position, or in a file
that builds Linen modules of its own (their ``apply`` must not get it), or for a
class holding a layer in a constant mode; a class holding Linen layers through
``nnx.bridge.ToNNX``; a construction that passes ``name=`` or ``metadata_fn=`` (they are
``to_linen``'s own), ``method=Class.method`` outside an ``apply``/``init`` call, or
with a moved train/eval argument (in ``apply``, ``method=models.Net.encode`` becomes
``nnx_method=models.Net.encode``, the NNX function run on the NNX model), and a parameter
read by its Linen name (``params['Dense_0']``).  A file that threads a Linen ``cache``
collection (decoding) builds the models through ``to_linen_decoding`` instead
(``constructs/to_linen_decoding.py``), which makes NNX attention caches where Linen's
``init`` made its own.  An ``init`` in a bridged file is given a ``default`` key for the streams other than
``params`` that a class draws on in ``__init__`` (``nnx.Dropout``, ``rngs.lstm.fork()``):
``model.init({'params': key, 'default': key}, x)``.  A file that builds the model but
does not ``init`` it hands it to a function of another file of the run; the
construction is bridged when every ``init`` there names each of those streams in its
key dict (``model.init({'params': k1, 'lstm': k2}, x)``), refused otherwise.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Optional, Union

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import ConvertedClass, Mode, method_of
from nnxlint.conversion.constructs import to_linen_decoding, to_linen_sized

NOTE = ("the training code in {files} stays Linen (`init`, `apply`, `TrainState`) and builds the converted "
        "models through `nnx.bridge.to_linen`: the parameters are named by the NNX attributes, so a Linen "
        "checkpoint loads through `nnxlint.transplant`; convert that code to `nnx.Optimizer` next")
_OWN_KEYWORDS = ("name", "metadata_fn", "skip_rng", "abstract_init")
LINEN_CALLS = ("apply", "apply_fn", "init", "init_with_output")
MODE_HELPER = "call_in_mode"
# What draws on a key stream when the NNX model is built: ``nnx.Dropout`` keeps a ``dropout``
# stream (another one with ``rng_collection=``), ``rngs.lstm.fork()`` the ``lstm`` one;
# ``rngs[name]`` one that cannot be told
_STREAM_USE = re.compile(r"Dropout\(|rng_collection|rngs\.(?!params\b)(\w+)|rngs\[")
_LINEN_NAME_READ = re.compile(r"""\[\s*['"]params['"]\s*\]\s*\[\s*['"]""")


def bridged(call: cst.Call, nnx: str, converted: ConvertedClass,
            sizes: Optional[cst.Lambda] = None, decoding: bool = False) -> Union[cst.Call, str]:
    """``nnx.bridge.to_linen(Class, *args, **kwargs)`` for the construction ``call``, or why not;
    ``to_linen_sized(Class, sizes, *args, **kwargs)`` for a class whose input sizes ``sizes``
    reads off its inputs (``constructs/to_linen_sized.py``); ``to_linen_decoding(Class, *args,
    **kwargs)`` in a file that decodes through a ``cache`` collection
    (``constructs/to_linen_decoding.py``)."""
    problem = bridge_problem(converted)
    if problem is not None:
        return problem
    clash = next((arg.keyword.value for arg in call.args
                  if arg.keyword is not None and arg.keyword.value in _OWN_KEYWORDS), None)
    if clash is not None:
        return f"`{clash}=` is an argument of `nnx.bridge.to_linen` itself: the construction is not bridged"
    if any(arg.star for arg in call.args):
        return "a construction with starred arguments is not bridged"
    options = [] if converted.uses_rngs else [keyword_argument("skip_rng", "True")]
    if decoding and sizes is not None:
        return (f"`{converted.name}` takes input sizes that its inputs give, in a file that decodes through a "
                "`cache` collection: the construction is not bridged")
    if decoding:  # its helper passes ``metadata_fn=None``
        args = [cst.Arg(call.func), *call.args, *options]
        function = to_linen_decoding.FUNCTION
    elif sizes is None:
        args = [cst.Arg(call.func), *call.args, *options, keyword_argument("metadata_fn", "None")]
        function = f"{nnx}.bridge.to_linen"
    else:  # its helper passes ``metadata_fn=None``
        args = [cst.Arg(call.func), cst.Arg(sizes), *call.args, *options]
        function = to_linen_sized.FUNCTION
    # the layout of the call's own arguments (one per line where any breaks the line) and its trailing comma
    commas = [arg.comma for arg in call.args[:-1] if isinstance(arg.comma, cst.Comma)]
    between = next((comma for comma in commas if isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace)),
                   commas[0] if commas else cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    visual = not isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace)
    if visual and isinstance(between.whitespace_after, cst.ParenthesizedWhitespace):
        # arguments aligned under the opening parenthesis: it moved with the longer name
        shift = len(function) - len(cst.Module([]).code_for_node(call.func))
        line = between.whitespace_after.last_line
        between = between.with_deep_changes(between.whitespace_after, last_line=cst.SimpleWhitespace(
            " " * max(len(line.value) + shift, 0)))
    trailing = call.args[-1].comma if call.args else cst.MaybeSentinel.DEFAULT
    args = [arg.with_changes(comma=between) for arg in args[:-1]] + [args[-1].with_changes(comma=trailing)]
    return call.with_changes(func=cst.parse_expression(function), args=args)


def bridge_problem(converted: ConvertedClass, lazily: bool = False) -> Optional[str]:
    """Why ``nnx.bridge.to_linen`` cannot hold the converted class, if it cannot (``lazily``:
    it is built under ``nnx.bridge.lazy_init``, ``to_linen_sized(lazy_init=True)``)."""
    if moved_mode(converted) is not None and converted.constant_flags:
        return (f"`{converted.name}` keeps a layer in a constant train/eval mode, which "
                "`model.train()`/`eval()` would change: the construction is not bridged")
    if converted.bridged and not lazily:
        return (f"`{converted.name}` holds Linen layers through `nnx.bridge.ToNNX`, which need "
                "`nnx.bridge.lazy_init`: the construction is not bridged back to Linen")
    return None


def moved_mode(converted: ConvertedClass) -> Optional[Mode]:
    """The Linen ``__call__``'s train/eval argument when the conversion moved it to
    ``model.train()``/``eval()`` (the converted ``__call__`` no longer takes it)."""
    mode = converted.mode
    return mode if mode is not None and mode.name not in _call_parameters(converted.node) else None


def mode_helper(mode: Mode, module: cst.Module) -> cst.SimpleStatementLine:
    """The function that Linen-style calls pass as ``nnx_method=``: it sets the mode that
    the Linen ``__call__`` took as an argument, then calls the NNX model (written in the
    module's indentation and newlines)."""
    train = f"not {mode.name}" if mode.eval_value else mode.name
    lines = [f"def {MODE_HELPER}({mode.name}):",
             '    """`nnx_method=` of `apply`/`init` on a model built by `nnx.bridge.to_linen`: Linen',
             f'    passed `{mode.name}` to `__call__`; the NNX model is set by `train()`/`eval()`."""',
             "",
             "    def call(module, *args, **kwargs):",
             f"        if {train}:",
             "            module.train()",
             "        else:",
             "            module.eval()",
             "        return module(*args, **kwargs)",
             "",
             "    return call",
             ""]
    indent = module.default_indent
    source = module.default_newline.join(
        indent * ((len(line) - len(line.lstrip(" "))) // 4) + line.lstrip(" ") for line in lines)
    return cst.parse_statement(source, config=module.config_for_parsing)  # type: ignore[return-value]


def in_mode(call: cst.Call, mode: Mode) -> Union[cst.Call, str, None]:
    """``model.apply(v, x, train=E)`` -> ``model.apply(v, x, nnx_method=call_in_mode(E))`` (the
    argument's default when the call leaves it out; for ``init``, eval mode); None for a call
    that is no ``apply`` or ``init``, or that leaves out an argument without a default; why
    not, when it is positional."""
    if not (isinstance(call.func, cst.Attribute) and call.func.attr.value in LINEN_CALLS):
        return None
    if any(arg.keyword is not None and arg.keyword.value == "nnx_method" for arg in call.args):
        return None
    given = next((arg for arg in call.args if arg.keyword is not None and arg.keyword.value == mode.name), None)
    positional = [arg for arg in call.args if arg.keyword is None]
    # (a flag inside ``*args`` reaches the NNX ``__call__``, which does not take it, and fails there)
    if given is None and len(positional) > mode.index + 1:
        return f"`{mode.name}` is passed by position: the call is not given the NNX model's mode"
    if given is None and mode.default is None:
        return None
    value = given.value if given is not None else cst.Name(str(mode.default))
    if call.func.attr.value == "init":
        # ``init`` keeps the variables built before the call and drops its output, so the mode
        # changes nothing but this: Linen's ``BatchNorm`` skips its mean over devices
        # (``axis_name``) while initializing, the NNX one only in eval mode
        value = cst.Name(str(mode.eval_value))
    method = cst.Arg(cst.Call(cst.Name(MODE_HELPER), [cst.Arg(value)]), keyword=cst.Name("nnx_method"),
                     equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
    if given is not None:
        return call.with_changes(args=[method.with_changes(comma=given.comma) if arg is given else arg
                                       for arg in call.args])
    # the new argument goes last, laid out as the call's last one was (its line and trailing comma)
    args = list(call.args)
    between = next((arg.comma for arg in reversed(args[:-1]) if isinstance(arg.comma, cst.Comma)),
                   cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    method = method.with_changes(comma=args[-1].comma)
    args[-1] = args[-1].with_changes(comma=between)
    return call.with_changes(args=[*args, method])


def adapt_calls(plan, module: cst.Module) -> None:
    """Each Linen ``apply``/``init`` call of the file (``plan``: ``project_files._Plan``) as a
    bridged model takes it: ``init`` with a ``default`` key, ``method=Net.encode`` as
    ``nnx_method=Net.encode`` (the NNX function, run on the NNX model), and a train/eval
    argument that the conversion moved to ``train()``/``eval()`` as ``nnx_method=call_in_mode(...)``;
    what cannot be adapted is a problem of the file."""
    mode = _one_mode(plan, module)
    for call in plan.linen_calls:
        new = plan.init_keys.get(id(call), call)
        method = next((arg for arg in new.args if arg.keyword is not None and arg.keyword.value == "method"
                       and isinstance(arg.value, cst.Attribute)
                       and plan.owner.spelled(module, arg.value.value) is not None), None)
        if method is not None:
            if mode is not None:
                plan.problems.append((call, f"`method=` with a `{mode.name}` argument moved to "
                                            "`train()`/`eval()` is not bridged"))
                continue
            new = new.with_changes(args=[arg.with_changes(keyword=cst.Name("nnx_method")) if arg is method else arg
                                         for arg in new.args])
            plan.adapted_methods.add(id(call))
            plan.seen_references.add(id(method.value.value))  # ``models.Net`` of ``models.Net.encode``
        if mode is not None:
            moded = in_mode(new, mode)
            if isinstance(moded, str):
                plan.problems.append((call, moded))
                continue
            if moded is not None:
                new = moded
                plan.mode_helper = True
        if new is not call:
            plan.calls[id(call)] = new


def _one_mode(plan, module: cst.Module) -> Optional[Mode]:
    """The one train/eval argument the bridged classes' conversion moved, if any (a problem
    of the file when there are several, or when the file's own Linen modules would get it)."""
    if not plan.modes:
        return None
    problem = None
    if len({(mode.name, mode.eval_value) for mode in plan.modes}) > 1:
        problem = "the bridged classes take different train/eval arguments"
    elif plan.builds_linen:
        problem = "the file builds Linen modules of its own, whose `apply` calls must not be given the NNX model's mode"
    elif MODE_HELPER in plan.scope.bindings:
        problem = f"the file has a `{MODE_HELPER}` of its own"
    if problem is not None:
        plan.problems.append((module, problem))
        return None
    return next(iter(plan.modes))


def with_default_key(call: cst.Call) -> Optional[cst.Call]:
    """``model.init(key, ...)`` -> ``model.init({'params': key, 'default': key}, ...)`` (also
    through ``jax.jit(model.init)``), or None
    for a call that is no ``init``, or already names a ``default`` key.

    ``ToLinen`` builds the NNX model in ``init`` with ``nnx.Rngs`` of init's keys only:
    a ``Dropout`` (or any stream other than ``params``) built in ``__init__`` needs one
    there, and the ``default`` stream stands in for every stream (Linen ignores keys no
    module asks for).
    """
    method = call.func
    if isinstance(method, cst.Call) and method.args:  # ``jax.jit(model.init)(key, x)``
        method = method.args[0].value
    if not (isinstance(method, cst.Attribute) and method.attr.value in ("init", "init_with_output")
            and call.args and call.args[0].keyword is None and not call.args[0].star):
        return None
    keys = call.args[0].value
    if isinstance(keys, cst.Dict):
        entries = {_string(element.key): element.value for element in keys.elements
                   if isinstance(element, cst.DictElement)}
        if "default" in entries or "params" not in entries:
            return None
        default = entries["params"]
        elements = list(keys.elements)
        elements[-1] = elements[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        keys = keys.with_changes(elements=[*elements, cst.DictElement(cst.SimpleString("'default'"), default)])
    else:
        keys = cst.Dict([cst.DictElement(cst.SimpleString("'params'"), keys,
                                         comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
                         cst.DictElement(cst.SimpleString("'default'"), keys)])
    return call.with_changes(args=[call.args[0].with_changes(value=keys), *call.args[1:]])


def init_streams(classes: Iterable[ConvertedClass]) -> Optional[frozenset[str]]:
    """The key streams other than ``params`` that building the classes draws on; None
    when one of them cannot be named."""
    found: set[str] = set()
    for converted in classes:
        for match in _STREAM_USE.finditer(cst.Module([]).code_for_node(converted.node)):
            if match.group(0) in ("rngs[", "rng_collection"):
                return None
            found.add(match.group(1) or "dropout")
    return frozenset(found)


def problems(module: cst.Module, spelled: Callable[[cst.Module, cst.BaseExpression], Optional[str]],
             classes: Iterable[ConvertedClass], keyed: Callable[[Optional[frozenset[str]]], bool],
             adapted: set[int]) -> list[tuple[cst.CSTNode, str]]:
    """The uses of a bridged model that would not behave as Linen's did (``keyed``: whether
    every ``init`` of the models built here gives these streams a key, or can; ``adapted``:
    the calls whose ``method=`` ``adapt_calls`` rewrote)."""
    kept = {id(arg) for node in walk(module) if isinstance(node, cst.Call) and id(node) in adapted
            for arg in node.args}
    found: list[tuple[cst.CSTNode, str]] = []
    streams = init_streams(classes)
    if streams != frozenset() and not keyed(streams):
        what = "a key stream it does not name" if streams is None else \
            ", ".join(f"`{stream}`" for stream in sorted(streams))
        found.append((module, f"the model built here is initialized elsewhere, and building it draws on {what}, "
                              "which that `init` may not give: the construction is not bridged"))
    for node in walk(module):
        if isinstance(node, cst.Arg) and node.keyword is not None:
            if node.keyword.value == "method" and isinstance(node.value, cst.Attribute) \
                    and spelled(module, node.value.value) is not None and id(node) not in kept:
                found.append((node, f"`method={module.code_for_node(node.value)}` names a function of the NNX "
                                    "class, which a bridged model does not run as a Linen method"))
        elif isinstance(node, cst.SimpleStatementLine) and _LINEN_NAME_READ.search(module.code_for_node(node)):
            found.append((node, "a parameter is read by its Linen name; a bridged model names them "
                                "by its NNX attributes"))
    return found


def _call_parameters(node: cst.ClassDef) -> set[str]:
    call = method_of(node, "__call__")
    if call is None:
        return set()
    params = call.params
    return {param.name.value for param in (*params.posonly_params, *params.params, *params.kwonly_params)}


def _string(node: Optional[cst.BaseExpression]) -> Optional[str]:
    return node.evaluated_value if isinstance(node, cst.SimpleString) else None


def keyword_argument(name: str, value: str) -> cst.Arg:
    return cst.Arg(cst.parse_expression(value), keyword=cst.Name(name),
                   equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))

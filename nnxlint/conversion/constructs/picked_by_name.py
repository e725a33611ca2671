"""A class of the models file picked by name, in Linen training code that stays Linen.

flax's imagenet example builds its model from the config's name::

    model_cls = getattr(models, config.model)  # 'ResNet50': partial(ResNet, stage_sizes=..., ...)
    model = create_model(model_cls=model_cls, ...)  # model_cls(num_classes=..., dtype=...)

No construction of the converted class is written out, so none can be given the new
arguments.  When the training code stays Linen (``constructs/to_linen.py``), the pick
becomes the bridged factory instead, and whatever calls it later gets a Linen module
holding the NNX class::

    model_cls = functools.partial(to_linen_sized, getattr(models, config.model),
                                  lambda x, *_, **__: (x.shape[-1],))

(``lambda *_, **__: ()`` for classes that take no input sizes).  A train/eval argument
the conversion moved to ``train()``/``eval()`` is handled by the file's ``apply``/``init``
calls, as for any bridged model; ``to_linen_sized`` models answer the NNX class's
arguments as attributes (``model.dtype``), as the Linen module's fields did.  A class
handed to a function of the run that builds it (``train.create_model(model_cls=
models._ResNet1)``) is handed over as the same factory, a pick of one class.

The name may pick any class or ``partial`` of the models file, so all of them must be
bridged alike.  One that holds a Linen layer kept in ``nnx.bridge.ToNNX``
(``ResNet18Local = partial(ResNet, conv=conv_local)``) has no variables until a first
call, which ``nnx.bridge.to_linen``'s ``init`` would not keep: the pick then passes
``lazy_init=True``, and each model is built under ``nnx.bridge.lazy_init`` on the inputs
of the call, in eval mode (its train/eval argument, which the conversion moved to
``train()``/``eval()``, is set by each call after).  Refused, with the reason: a class of
the file that stays Linen, a factory function (its arguments are not the class's),
classes that read different input sizes or differ in taking ``rngs``, a class that
``nnx.bridge.to_linen`` cannot hold (``to_linen.bridge_problem``), one holding ``ToNNX``
layers without a moved train/eval argument, and a file that decodes through a ``cache``
collection.
"""

from __future__ import annotations

from typing import Collection, Union

import libcst as cst

from nnxlint.conversion.base import ConvertedClass
from nnxlint.conversion.constructs import to_linen, to_linen_sized


def picked(expression: cst.BaseExpression, module: cst.Module, candidates: dict[str, Union[ConvertedClass, str]],
           sizes: dict[str, Union[cst.Lambda, str, None]], partial: str,
           holding_linen: Collection[str] = ()) -> Union[tuple[cst.Call, bool], str]:
    """The bridged factory for ``expression`` (``getattr(models, name)``, ``models._ResNet1``)
    and whether it builds the models lazily (``lazy_init=True``), or why not.

    ``candidates``: what the expression may give (for ``getattr``: each class, ``partial``
    and factory function of the models file) -> the converted class it builds, or why it
    builds none to bridge;
    ``sizes``: the same names -> their sizes function (``to_linen_sized.sizes_function``;
    None when the class takes no input sizes); ``partial``: how the file spells
    ``functools.partial``; ``holding_linen``: the partials that pass a layer kept Linen in
    ``nnx.bridge.ToNNX`` (``ResNet18Local = partial(ResNet, conv=conv_local)``)."""
    picked_code = module.code_for_node(expression)
    lazy = False
    for name, converted in sorted(candidates.items()):
        if isinstance(converted, str):
            return f"`{picked_code}` may pick `{name}`, which {converted}"
        lazily = name in holding_linen or bool(converted.bridged)
        problem = to_linen.bridge_problem(converted, lazily)
        if problem is not None:
            return problem
        if lazily and to_linen.moved_mode(converted) is None:
            return (f"`{picked_code}` may pick `{name}`, which holds Linen layers in `nnx.bridge.ToNNX` and takes "
                    "no train/eval argument for its calls to set after their first run in eval mode")
        lazy |= lazily
        if isinstance(sizes[name], str):
            return f"`{picked_code}` may pick `{name}`: {sizes[name]}"
    functions = {None if function is None else module.code_for_node(function) for function in sizes.values()}
    if len(functions) > 1:
        return f"the classes `{picked_code}` may pick read different input sizes off their inputs"
    classes = [converted for converted in candidates.values() if isinstance(converted, ConvertedClass)]
    if len({converted.uses_rngs for converted in classes}) > 1:
        return f"some classes `{picked_code}` may pick take `rngs` and some do not"
    any_class = classes[0]
    options = [] if any_class.uses_rngs else [to_linen.keyword_argument("skip_rng", "True")]
    # (``to_linen_sized`` with no sizes rather than ``nnx.bridge.to_linen``: its model answers ``model.dtype``)
    function = next(iter(sizes.values())) or cst.parse_expression("lambda *_, **__: ()")
    options += [to_linen.keyword_argument("lazy_init", "True")] if lazy else []
    args = [cst.Arg(cst.Name(to_linen_sized.FUNCTION)), cst.Arg(expression), cst.Arg(function), *options]
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    return cst.Call(cst.parse_expression(partial), [arg.with_changes(comma=comma) for arg in args[:-1]] + args[-1:]), lazy

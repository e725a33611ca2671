"""Decoding through Linen's ``cache`` collection, driven from the training file:

    decode_model = Model(decode=True)
    cache = decode_model.init(key, tokens)['cache']
    for ...:
        logits, updates = decode_model.apply({'params': params, 'cache': cache}, token, mutable=['cache'])
        cache = updates['cache']

An NNX module keeps its cache: the decode model is built where Linen made the cache
(so each ``init`` starts from fresh ``nnx.Cache`` variables, the ``has_variable``
caches of ``__init__`` included), its attention layers get ``init_cache`` for the
batch and length of the ``init`` input, and each step loads the trained weights
(Linen reads ``params`` at every ``apply``) before calling the model.  The cache dict
threading disappears.  Other uses of the cache or of the decode model are refused,
naming the line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, line_of, single_assign
from nnxlint.conversion.training_modes import statements_of

if TYPE_CHECKING:
    from nnxlint.conversion.training import TrainingConverter, TrainingRewriter

CACHE = "cache"


@dataclass
class DecodeSite:
    model: str  # the decode model's name
    cache: str  # the name the cache dict is threaded through
    construction: cst.SimpleStatementLine  # decode_model = Model(decode=True)
    init: cst.SimpleStatementLine  # cache = decode_model.init(key, x)['cache']
    init_call: cst.Call
    example: cst.BaseExpression  # x
    applies: dict[int, cst.Call] = field(default_factory=dict)  # id(statement) -> its apply
    updates: set[int] = field(default_factory=set)  # id(statement) of `cache = updates['cache']`


def _string(node: cst.BaseExpression) -> Optional[str]:
    return node.evaluated_value if isinstance(node, cst.SimpleString) else None  # type: ignore[return-value]


def _cache_key(node: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``x`` of ``x['cache']``."""
    if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index) \
            and _string(node.slice[0].slice.value) == CACHE:
        return node.value
    return None



def decode_init(converter: "TrainingConverter", call: cst.Call) -> Optional[DecodeSite]:
    """The decode site whose ``init`` is ``call`` (its uses not yet followed: ``follow_uses``);
    None when ``call`` is no ``m.init(...)['cache']``."""
    statement = converter._statement_of(call)
    assign = single_assign(statement) if statement is not None else None
    if assign is None or not isinstance(assign.targets[0].target, cst.Name):
        return None
    picked = None  # `cache = variables['cache']` after `variables = model.init(...)`
    if assign.value is call:
        picked = _cache_picked(converter, statement, assign.targets[0].target.value)  # type: ignore[arg-type]
        if picked is None:
            return None
        assign = single_assign(picked)  # type: ignore[assignment]
    elif _cache_key(assign.value) is not call:
        return None
    func = call.func
    if not (isinstance(func, cst.Attribute) and func.attr.value == "init" and isinstance(func.value, cst.Name)):
        return None
    where = f"line {line_of(converter.module, call)}"
    construction = converter._construction_of(func.value.value, statement)
    if construction is None:
        raise Unconvertible(f"the decode cache `init` at {where} is called on `{func.value.value}`, not on a "
                            "model built by a Linen class earlier in the same function")
    if len(call.args) != 2 or any(arg.keyword is not None or arg.star for arg in call.args):
        raise Unconvertible(f"the decode cache `init` at {where}: only `model.init(key, x)['cache']` is converted")
    site = DecodeSite(func.value.value, assign.targets[0].target.value, construction, statement,  # type: ignore
                      call, call.args[1].value)
    if picked is not None:
        site.updates.add(id(picked))  # removed as the updates are
    return site


def _cache_picked(converter: "TrainingConverter", init: cst.SimpleStatementLine,
                  variables: str) -> Optional[cst.SimpleStatementLine]:
    """``cache = variables['cache']`` when that is the only read of ``variables`` (a
    training ``variables = model.init(...)`` reads ``params``)."""
    body = statements_of(converter.parents.get(id(init)))
    reads = [node for top in body for node in walk(top)
             if isinstance(node, cst.Name) and node.value == variables]
    statements = [node for top in body for node in walk(top) if isinstance(node, cst.SimpleStatementLine)]
    after = [index for index, statement in enumerate(statements) if statement is init]
    for statement in statements[after[0] + 1:] if after else ():
        assign = single_assign(statement)
        source = _cache_key(assign.value) if assign is not None else None
        if isinstance(source, cst.Name) and source.value == variables and len(reads) == 2 \
                and isinstance(assign.targets[0].target, cst.Name):  # type: ignore[union-attr]
            return statement
    return None


def follow_uses(converter: "TrainingConverter", site: DecodeSite) -> None:
    """Fills the applies and cache updates; every other use of the cache or model is refused."""
    body = statements_of(converter.parents.get(id(site.init)))
    updates_names: set[str] = set()
    allowed: set[int] = {id(site.construction), id(site.init), *site.updates}
    statements = [node for top in body for node in walk(top) if isinstance(node, cst.SimpleStatementLine)]
    for statement in statements:
        assign = single_assign(statement)
        apply = _decode_apply(site, assign.value) if assign is not None else None
        if apply is not None:
            target = assign.targets[0].target  # type: ignore[union-attr]
            if not (isinstance(target, cst.Tuple) and len(target.elements) == 2
                    and all(isinstance(element.value, cst.Name) for element in target.elements)):
                raise Unconvertible(f"the decode step at line {line_of(converter.module, statement)} must be "
                                    "unpacked as `output, updates = model.apply(...)`")
            site.applies[id(statement)] = apply
            updates_names.add(target.elements[1].value.value)  # type: ignore[attr-defined]
            allowed.add(id(statement))
        elif assign is not None and isinstance(assign.targets[0].target, cst.Name) \
                and assign.targets[0].target.value == site.cache:
            source = _cache_key(assign.value)
            if isinstance(source, cst.Name) and source.value in updates_names:
                site.updates.add(id(statement))
                allowed.add(id(statement))
    for statement in statements:
        if id(statement) in allowed:
            continue
        for node in walk(statement):
            if isinstance(node, cst.Name) and node.value in (site.cache, site.model, *updates_names):
                raise Unconvertible(f"line {line_of(converter.module, statement)} uses `{node.value}` other than "
                                    "in the decode step (`out, updates = model.apply({'params': ..., 'cache': "
                                    "cache}, x, mutable=['cache'])` then `cache = updates['cache']`): "
                                    "passing, returning or reordering the cache (beam search) is not converted")
    if not site.applies:
        raise Unconvertible(f"the decode cache made at line {line_of(converter.module, site.init)} is not used "
                            "by a decode step the conversion follows")


def _decode_apply(site: DecodeSite, value: cst.BaseExpression) -> Optional[cst.Call]:
    if not (isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value == "apply"
            and isinstance(value.func.value, cst.Name) and value.func.value.value == site.model):
        return None
    variables = value.args[0].value if value.args else None
    entries = {_string(element.key): element.value for element in variables.elements
               if isinstance(element, cst.DictElement)} if isinstance(variables, cst.Dict) else {}
    cache = entries.get(CACHE)
    mutable = [arg.value for arg in value.args if arg.keyword is not None and arg.keyword.value == "mutable"]
    mutable_cache = len(mutable) == 1 and isinstance(mutable[0], (cst.List, cst.Tuple)) \
        and [_string(element.value) for element in mutable[0].elements] == [CACHE]
    if set(entries) != {"params", CACHE} or not (isinstance(cache, cst.Name) and cache.value == site.cache) \
            or not mutable_cache or any(arg.keyword is not None and arg.keyword.value != "mutable" for arg in value.args):
        return None
    return value


def decode_statement(rewriter: "TrainingRewriter", site: DecodeSite,
                     original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
    """The NNX statements for one statement of the decode site; None for the others."""
    nnx = rewriter.nnx
    if original is site.construction or id(original) in site.updates:
        return cst.RemoveFromParent()
    if original is site.init:
        construction = single_assign(site.construction).value  # type: ignore[union-attr]
        _check_same_class(rewriter, construction)  # type: ignore[arg-type]
        rngs = [cst.Arg(cst.parse_expression(f"{nnx}.Rngs(0)"), keyword=cst.Name("rngs"),  # weights loaded below
                        equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))]
        built = rewriter.env.code(construction.with_changes(  # type: ignore[attr-defined]
            args=[*(arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                    for arg in construction.args),  # type: ignore[attr-defined]
                  *(rngs if rewriter.plan.converted.uses_rngs else ())]))
        example = rewriter.env.code(site.example)
        lines = [rewriter._replace_line(original, f"{site.model} = {built}"),
                 cst.parse_statement(
                     f"for _, layer in {nnx}.iter_modules({site.model}):\n"
                     f"    if isinstance(layer, {nnx}.MultiHeadAttention):  # Linen's init made its cache\n"
                     f"        layer.init_cache((*{example}.shape, layer.in_features))\n")]
        return cst.FlattenSentinel(lines)
    apply = site.applies.get(id(original))
    if apply is None:
        return None
    params = apply.args[0].value.elements[0]  # type: ignore[attr-defined]
    params = params.value if _string(params.key) == "params" else apply.args[0].value.elements[1].value  # type: ignore
    if rewriter.role(params) is None:
        raise Unconvertible(f"the decode step at line {line_of(rewriter.env.module, original)} reads params the "
                            "conversion cannot trace to the trained model")
    output = single_assign(original).targets[0].target.elements[0].value  # type: ignore[union-attr]
    inputs = ", ".join(rewriter.env.code(arg.value) for arg in apply.args[1:] if arg.keyword is None)
    share = rewriter._replace_line(original, f"{nnx}.update({site.model}, {nnx}.state({rewriter.model}, {nnx}.Param))")
    step = rewriter._statement(f"{rewriter.env.code(output)} = {site.model}({inputs})")
    return cst.FlattenSentinel([share, step])


def _check_same_class(rewriter: "TrainingRewriter", construction: cst.Call) -> None:
    """The decode model is the trained class in another configuration (its weights are
    the trained model's), built from its fields alone (no input sizes to find)."""
    where = f"the decode model at line {line_of(rewriter.env.module, construction)}"
    trained = rewriter.plan.site.class_name
    if rewriter.analysis.converter.linen_class(construction.func) != trained:
        raise Unconvertible(f"{where} is not built by `{trained}`, the class of the trained model")
    if rewriter.plan.converted.size_params:
        raise Unconvertible(f"{where}: `{trained}` takes input sizes in NNX "
                            f"(`{next(iter(rewriter.plan.converted.size_params))}`), not passed at the decode site")

"""Small, format-preserving CST edits that several fixes need."""

from __future__ import annotations

from typing import Optional

import libcst as cst

_NO_SPACE = cst.SimpleWhitespace("")
_SPACE = cst.SimpleWhitespace(" ")


def has_keyword(call: cst.Call, keyword: str) -> bool:
    return any(arg.keyword is not None and arg.keyword.value == keyword for arg in call.args)


def has_double_star(call: cst.Call) -> bool:
    return any(arg.star == "**" for arg in call.args)


def with_keyword(call: cst.Call, keyword: str, value: cst.BaseExpression) -> cst.Call:
    """``call`` with ``keyword=value`` appended, keeping a trailing comma and line break."""
    args = list(call.args)
    new = cst.Arg(value, keyword=cst.Name(keyword), equal=cst.AssignEqual(_NO_SPACE, _NO_SPACE))
    if args:
        last = args[-1]
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=_SPACE))
        new = new.with_changes(comma=last.comma)
    args.append(new)
    return call.with_changes(args=args)


def with_first_argument(call: cst.Call, value: cst.BaseExpression) -> cst.Call:
    """``call`` with ``value`` inserted as its first positional argument."""
    new = cst.Arg(value, comma=cst.Comma(whitespace_after=_SPACE))
    return call.with_changes(args=[new, *call.args])


def with_keyword_only_param(params: cst.Parameters, name: str,
                            annotation: Optional[cst.BaseExpression]) -> cst.Parameters:
    """``params`` with a keyword-only ``name: annotation`` added at the end of the
    keyword-only section (introducing ``*`` when there is none)."""
    new = cst.Param(cst.Name(name), annotation=cst.Annotation(annotation) if annotation is not None else None)
    star_arg = params.star_arg
    if params.star_kwarg is not None:
        new = new.with_changes(comma=cst.Comma(whitespace_after=_SPACE))
    kwonly = list(params.kwonly_params)
    if kwonly:
        kwonly[-1] = kwonly[-1].with_changes(comma=cst.Comma(whitespace_after=_SPACE))
    elif not isinstance(star_arg, cst.Param):
        star_arg = cst.ParamStar(comma=cst.Comma(whitespace_after=_SPACE))
    positional = list(params.params)
    if positional and not kwonly and not isinstance(params.star_arg, (cst.Param, cst.ParamStar)):
        last = positional[-1]
        if last.comma is cst.MaybeSentinel.DEFAULT:
            positional[-1] = last.with_changes(comma=cst.Comma(whitespace_after=_SPACE))
    return params.with_changes(params=positional, star_arg=star_arg, kwonly_params=[*kwonly, new])


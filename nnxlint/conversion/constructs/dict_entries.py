"""Arrays kept in a local dict under string keys and read back (big_vision's ``out``)::

    out = {}
    x = out['stem'] = Root(width)(image)
    ...
    out['pre_logits_2d'] = x
    x = out['pre_logits'] = jnp.mean(x, axis=(1, 2))
    if self.num_classes:
        head = nn.Dense(self.num_classes, name='head')
        out['logits_2d'] = head(out['pre_logits_2d'])
    return x, out

``out['pre_logits_2d']`` has the shape of what was stored under that key, so the
head's input size is known (``nnx.Linear(x_features, ...)``) instead of becoming a
constructor parameter.  Followed only where the dict's value is plain: a local bound
once, to ``{}``, and otherwise only indexed (``out[key]``, read or written) or
returned; an entry stored inside a loop or a branch is unknown afterwards, a store
under a key that is no string literal (``out[f'stage{i + 1}']``) forgets every entry,
and a loop forgets the entries it stores before its body is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.shapes import Shape

if TYPE_CHECKING:
    from nnxlint.conversion.calls import CallRewriter


def record_dicts(function: cst.FunctionDef) -> frozenset[str]:
    """The method's locals bound once to ``{}`` and otherwise only indexed or returned."""
    bound: dict[str, int] = {}
    for node in walk(function.body):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    name = target.target.value
                    bound[name] = bound.get(name, 0) + (1 if _empty_dict(node.value) else 2)
    candidates = {name for name, count in bound.items() if count == 1}
    if not candidates:
        return frozenset()
    allowed: set[int] = set()  # the Name nodes of allowed uses
    for node in walk(function.body):
        if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Name):
            allowed.add(id(node.value))
        elif isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name) \
                and _empty_dict(node.value):
            allowed.add(id(node.targets[0].target))
        elif isinstance(node, cst.Return) and node.value is not None:
            elements = node.value.elements if isinstance(node.value, cst.Tuple) else [cst.Element(node.value)]
            allowed.update(id(element.value) for element in elements if isinstance(element.value, cst.Name))
    for node in walk(function):
        if isinstance(node, cst.Name) and node.value in candidates and id(node) not in allowed:
            candidates.discard(node.value)
    return frozenset(candidates)


def bind_entry(rewriter: "CallRewriter", target: cst.BaseExpression, shape: Shape) -> bool:
    """``out['key'] = value``: the entry's shape (None inside a loop or branch); another key
    forgets the dict's entries.  False when ``target`` is no entry of such a dict."""
    found = _entry(rewriter, target)
    if found is None:
        return False
    name, key = found
    if key is None:
        rewriter.entry_shapes = {entry: value for entry, value in rewriter.entry_shapes.items() if entry[0] != name}
    elif rewriter.depth:
        rewriter.entry_shapes.pop((name, key), None)
    else:
        rewriter.entry_shapes[(name, key)] = shape
    return True


def entry_shape(rewriter: "CallRewriter", node: cst.Subscript) -> tuple[bool, Shape]:
    """(True, its shape) for a read of ``out['key']`` of such a dict; (False, None) otherwise."""
    found = _entry(rewriter, node)
    if found is None or found[1] is None:
        return False, None
    return True, rewriter.entry_shapes.get(found)  # type: ignore[arg-type]


def forget_in_loop(rewriter: "CallRewriter", loop: cst.CSTNode) -> None:
    """A loop's body may read an entry that an earlier iteration stored: entries the loop
    stores are unknown from its start."""
    if not rewriter.entry_shapes:
        return
    stored = {found[0] for node in walk(loop) if isinstance(node, cst.AssignTarget)
              and (found := _entry(rewriter, node.target)) is not None}
    rewriter.entry_shapes = {entry: value for entry, value in rewriter.entry_shapes.items() if entry[0] not in stored}


def _entry(rewriter: "CallRewriter", node: cst.BaseExpression) -> Optional[tuple[str, Optional[str]]]:
    """(dict, key) for ``out['key']`` (key None for any other index) of a dict the method keeps plain."""
    if not (isinstance(node, cst.Subscript) and isinstance(node.value, cst.Name)
            and node.value.value in rewriter.record_dicts):
        return None
    index = node.slice[0].slice if len(node.slice) == 1 else None
    value = index.value if isinstance(index, cst.Index) else None
    key = value.evaluated_value if isinstance(value, cst.SimpleString) else None
    return node.value.value, key if isinstance(key, str) else None


def _empty_dict(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Dict) and not node.elements

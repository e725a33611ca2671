"""NNX101: an NNX layer or module constructed without its required rngs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import libcst as cst

from nnxlint.edits import has_keyword, with_keyword, with_keyword_only_param
from nnxlint.flax_api import RNGS_REQUIRED_LAYERS
from nnxlint.names import collect_scope
from nnxlint.objects import (holds_rngs, init_of_module_class, is_module_class, requires_rngs, rngs_in_scope,
                             rngs_position)
from nnxlint.rule import Fix, Invalid, Needs, Rule, Valid


@dataclass
class _MissingRngs:
    call: cst.Call
    what: str  # "nnx.Linear" or the user's class name
    rngs: Optional[str]  # an nnx.Rngs visible at the call
    init: Optional[tuple[cst.FunctionDef, cst.ClassDef]]  # the NNX module __init__ it is in
    user_class: Optional[str] = None
    positional_rngs: Optional[cst.Arg] = None  # an Rngs passed positionally to a layer
    class_node: Optional[cst.ClassDef] = None  # the user's class the name refers to at the call


class MissingRngs(Rule):
    """## What it does
    Flags the construction of an NNX layer whose `rngs` argument is required
    (Linear, Conv, Embed, the norms, attention, recurrent cells, LoRA, ... — the
    table in `nnxlint/flax_api.py`) without `rngs`, and the construction of an
    `nnx.Module` subclass of the same file whose `__init__` requires `rngs`.
    `nnx.Dropout`, `nnx.RNN` and `nnx.Bidirectional` take `rngs` optionally and
    are not flagged; neither is a call that passes `**kwargs`.

    ## Why is this bad?
    NNX creates parameters eagerly, so a layer needs its random keys when it is
    built. The call fails with
    `TypeError: Linear.__init__() missing 1 required keyword-only argument: 'rngs'`.

    ## Example
    ```python
    class MLP(nnx.Module):
        def __init__(self, din, dout, *, rngs: nnx.Rngs):
            self.linear = nnx.Linear(din, dout)
    ```

    ## Use instead
    ```python
    class MLP(nnx.Module):
        def __init__(self, din, dout, *, rngs: nnx.Rngs):
            self.linear = nnx.Linear(din, dout, rngs=rngs)
    ```

    ## Fix safety
    Safe when an `nnx.Rngs` is in scope (an `rngs` parameter, a parameter
    annotated `nnx.Rngs`, a variable assigned `nnx.Rngs(...)`): it is passed as
    `rngs=`. Inside an `nnx.Module.__init__` without one, the fix adds a
    keyword-only `rngs: nnx.Rngs` parameter, passes it on, and updates the calls
    of that class in this file (passing their own `rngs`, or `nnx.Rngs(0)` where
    none is in scope): unsafe, because the class's signature changes for callers
    in other files, and `nnx.Rngs(0)` is a seed the original code never chose.
    """

    code = "NNX101"
    name = "missing-rngs"
    summary = "NNX layer or module constructed without its required `rngs`"
    fixable = "unsafe"
    # a call without `rngs` (nor starred arguments) of a layer of the table, or of a class
    # whose __init__ takes `rngs` (of this file, by its name; or of another file)
    triggers = (Needs(uses=("flax.nnx",), calls=tuple(f"flax.nnx.{layer}" for layer in sorted(RNGS_REQUIRED_LAYERS)),
                      missing_keywords=("rngs",), imports_only=True),
                Needs(uses=("flax.nnx",), constructs=("rngs",), missing_keywords=("rngs",)))
    valid = (
        Valid("from flax import nnx\nlayer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))\n"),
        Valid("from flax import nnx\ndrop = nnx.Dropout(0.5)\n"),
        Valid("from flax import nnx\nlayer = nnx.Linear(2, 3, **options)\n"),
        Valid("from flax import nnx\nclass Linear:\n    def __init__(self, a, b): ...\nlayer = Linear(2, 3)\n"),
        Valid("from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, din, *, rngs=None):\n"
              "        self.din = din\n\nblock = Block(3)\n"),
        Valid("import torch.nn as nn\nlayer = nn.Linear(2, 3)\n"),
        Valid("from flax import nnx\n\nclass Dense(nnx.Module):\n    def __init__(self, din, dout, rngs: nnx.Rngs):\n"
              "        self.w = nnx.Param(rngs.params.normal((din, dout)))\n\n"
              "class MLP(nnx.Module):\n    def __init__(self, rngs: nnx.Rngs):\n"
              "        self.dense = Dense(4, 16, rngs)\n"),
        Valid("from flax import nnx\nlayer = nnx.Linear(*shape, **options)\n"),
        # the name is redefined later (notebooks, tutorials): the call uses the class in effect there
        Valid("from flax import nnx\n\nclass MLP(nnx.Pytree):\n    def __init__(self, dim):\n        self.dim = dim\n\n"
              "model = MLP(2)\n\nclass MLP(nnx.Module):\n    def __init__(self, dim, rngs: nnx.Rngs):\n"
              "        self.linear = nnx.Linear(dim, dim, rngs=rngs)\n"),
    )
    invalid = (
        Invalid(
            "from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, din, dout, *, rngs: nnx.Rngs):\n"
            "        self.hidden = nnx.Linear(din, 32, rngs=rngs)\n        self.out = nnx.Linear(32, dout)  # head\n",
            fixed="from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, din, dout, *, rngs: nnx.Rngs):\n"
                  "        self.hidden = nnx.Linear(din, 32, rngs=rngs)\n"
                  "        self.out = nnx.Linear(32, dout, rngs=rngs)  # head\n",
            message="rngs",
        ),
        Invalid(
            "from flax import nnx\nkeys = nnx.Rngs(params=0)\nnorm = nnx.LayerNorm(8)\n",
            fixed="from flax import nnx\nkeys = nnx.Rngs(params=0)\nnorm = nnx.LayerNorm(8, rngs=keys)\n",
        ),
        Invalid(
            "from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, din, dout):\n"
            "        self.linear = nnx.Linear(din, dout)\n        self.norm = nnx.BatchNorm(dout)\n\n"
            "def make(rngs: nnx.Rngs):\n    return MLP(2, 3)\n\nmodel = MLP(2, 3)\n",
            fixed="from flax import nnx\n\nclass MLP(nnx.Module):\n    def __init__(self, din, dout, *, rngs: nnx.Rngs):\n"
                  "        self.linear = nnx.Linear(din, dout, rngs=rngs)\n"
                  "        self.norm = nnx.BatchNorm(dout, rngs=rngs)\n\n"
                  "def make(rngs: nnx.Rngs):\n    return MLP(2, 3, rngs=rngs)\n\nmodel = MLP(2, 3, rngs=nnx.Rngs(0))\n",
            unsafe=True, count=2,
        ),
        Invalid(
            "from flax import nnx\n\nclass Block(nnx.Module):\n    def __init__(self, din, *, rngs: nnx.Rngs):\n"
            "        self.linear = nnx.Linear(din, din, rngs=rngs)\n\nblock = Block(4)\n",
            message="Block",
        ),
        Invalid("from flax.nnx import Conv\nconv = Conv(1, 8, (3, 3))\n"),
        Invalid(
            "from flax import nnx\nrngs = nnx.Rngs(0)\nlayer = nnx.Linear(2, 3, rngs)\n",
            fixed="from flax import nnx\nrngs = nnx.Rngs(0)\nlayer = nnx.Linear(2, 3, rngs=rngs)\n",
            message="keyword-only",
        ),
        Invalid(
            "from flax import nnx\nlayer = nnx.Linear(\n    2,\n    3,\n    nnx.Rngs(0),\n)\n",
            fixed="from flax import nnx\nlayer = nnx.Linear(\n    2,\n    3,\n    rngs=nnx.Rngs(0),\n)\n",
        ),
        Invalid("import flax\nemb = flax.nnx.Embed(10, 4)\n"),
    )

    def __init__(self, context) -> None:
        super().__init__(context)
        self.missing: list[_MissingRngs] = []
        self.class_calls: list[_MissingRngs] = []

    def visit_Call(self, node: cst.Call) -> None:
        if has_keyword(node, "rngs") or any(arg.star for arg in node.args):
            return
        layer = self.context.nnx_member(node.func)
        if layer in RNGS_REQUIRED_LAYERS:
            positional = next((arg for arg in node.args
                               if arg.keyword is None and holds_rngs(self.context, arg.value)), None)
            self.missing.append(_MissingRngs(node, f"nnx.{layer}", rngs_in_scope(self.context),
                                             init_of_module_class(self.context), positional_rngs=positional))
        elif isinstance(node.func, cst.Name) and isinstance(
                (binding := self.context.lookup(node.func.value)) and binding.node, cst.ClassDef):
            self.class_calls.append(_MissingRngs(node, node.func.value, rngs_in_scope(self.context),
                                                 init_of_module_class(self.context), node.func.value,
                                                 class_node=binding.node))  # type: ignore[union-attr]
        else:  # an NNX module class of another file of the project
            info = self.context.project_class(node.func)
            if (info is not None and info.kind == "module" and info.path != self.context.path
                    and info.requires_rngs() and not _positional_reaches(node, info.rngs_position())):
                name = cst.Module([]).code_for_node(node.func)
                self.missing.append(_MissingRngs(node, name, rngs_in_scope(self.context),
                                                 init_of_module_class(self.context), user_class=name))

    def leave_Module(self, node: cst.Module) -> None:
        calls_of: dict[int, list[_MissingRngs]] = {}
        for call in self.class_calls:
            owner = call.class_node
            calls_of.setdefault(id(owner), []).append(call)
            if (owner is not None and is_module_class(self.context, owner) and requires_rngs(owner)
                    and not _passes_rngs_positionally(call.call, owner)):
                self.missing.append(call)
        # one unsafe fix per __init__ that lacks rngs, shared by all its findings
        init_fixes: dict[int, Fix] = {}
        for item in self.missing:
            fix = None
            if item.positional_rngs is not None:
                self._report_positional(item)
                continue
            if item.rngs is not None:
                fix = Fix(f"pass `rngs={item.rngs}`", "safe",
                          {item.call: with_keyword(item.call, "rngs", cst.Name(item.rngs))})
            elif item.init is not None and item.user_class is None and not _binds_rngs(item.init[0]):
                init, owner = item.init
                fix = init_fixes.get(id(init))
                if fix is None:
                    fix = self._add_rngs_parameter(init, owner, calls_of.get(id(owner), []))
                    init_fixes[id(init)] = fix
            self.report(item.call, f"`{item.what}` constructed without `rngs`: NNX builds parameters eagerly "
                                   "and raises TypeError (missing keyword-only argument 'rngs')", fix)

    def _report_positional(self, item: _MissingRngs) -> None:
        arg = item.positional_rngs
        assert arg is not None
        index = list(item.call.args).index(arg)
        if all(later.keyword is not None for later in item.call.args[index + 1:]):  # name it where it is
            named = arg.with_changes(keyword=cst.Name("rngs"), equal=cst.AssignEqual(
                cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
            fixed = item.call.with_changes(args=[*item.call.args[:index], named, *item.call.args[index + 1:]])
        else:  # positional arguments follow: move it to the end
            rest = [other for other in item.call.args if other is not arg]
            fixed = with_keyword(item.call.with_changes(args=rest), "rngs", arg.value)
        self.report(item.call, f"`{item.what}` takes `rngs` as a keyword-only argument: passed positionally it "
                               "raises TypeError (too many positional arguments)",
                    Fix("pass it as `rngs=`", "safe", {item.call: fixed}))

    def _add_rngs_parameter(self, init: cst.FunctionDef, owner: cst.ClassDef,
                            callers: list[_MissingRngs]) -> Fix:
        rngs_type, imports = self.context.nnx_ref("Rngs")
        replacements: dict = {init.params: with_keyword_only_param(init.params, "rngs", rngs_type)}
        for item in self.missing:
            if item.init is not None and item.init[0] is init and item.user_class is None:
                replacements[item.call] = with_keyword(item.call, "rngs", cst.Name("rngs"))
        for caller in callers:
            value = cst.Name(caller.rngs) if caller.rngs else cst.Call(rngs_type, [cst.Arg(cst.Integer("0"))])
            replacements[caller.call] = with_keyword(caller.call, "rngs", value)
        return Fix(f"add `rngs: nnx.Rngs` to `{owner.name.value}.__init__`, pass it on, and update its calls",
                   "unsafe", replacements, imports)


def _binds_rngs(init: cst.FunctionDef) -> bool:
    """Whether ``__init__`` already has a name ``rngs`` (a parameter of another type,
    ``Optional``, a string annotation, or a local): a second one would not compile, or
    would shadow it."""
    return "rngs" in collect_scope(init, None).bindings


def _passes_rngs_positionally(call: cst.Call, owner: cst.ClassDef) -> bool:
    return _positional_reaches(call, rngs_position(owner))


def _positional_reaches(call: cst.Call, position: Optional[int]) -> bool:
    """Whether the call's positional arguments reach ``rngs`` at ``position``."""
    positional = [arg for arg in call.args if arg.keyword is None]
    return position is not None and len(positional) > position

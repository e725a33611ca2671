"""Construct units: one small module per Linen construct the conversion knows.

A unit is to the conversion what a rule is to the linter: one file, one
construct, registered by a decorator, found by name.  ``ClassConverter`` and
``CallRewriter`` look a construct up here and hand it the parts it needs; they
know nothing of any particular construct.  Two kinds:

* ``Factory`` -- a Linen constructor that builds other modules and is not one
  layer of the table in ``linen_map.py``: ``nn.Sequential``, ``nn.RNN`` (next:
  ``nn.scan``, ``nn.remat``).  Registered under its ``flax.linen`` member name.
* ``SelfCall`` -- ``self.<name>(...)`` inside a Linen method: ``self.param``,
  ``self.variable``, ``self.make_rng``, ``self.sow``.  Registered under
  the method name.

To add a construct: write ``constructs/<construct>.py`` with a subclass of
``Factory`` or ``SelfCall`` decorated by ``@factory("Name")`` or
``@self_call("name")``, import it at the end of this file, add a fixture under
``fixtures/linen_<construct>`` and a test in ``tests/test_linen_convert.py``.
A unit raises ``Unconvertible`` with the reason whenever it cannot convert
exactly.  (A plain layer is a row of ``linen_map.LAYERS`` instead; a Linen
function that flax.nnx re-exports is a name in ``linen_map.SAME_FUNCTIONS``;
the shape a function returns is a rule in ``call_shapes.py``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

import libcst as cst

from nnxlint.conversion.shapes import Shape

if TYPE_CHECKING:
    from nnxlint.conversion.base import Slot
    from nnxlint.conversion.calls import CallRewriter
    from nnxlint.conversion.classes import ClassConverter


class Factory:
    """A Linen constructor of other modules, e.g. ``nn.Sequential([...])``."""

    name = ""

    def parts(self, construction: cst.Call, converter: "ClassConverter") -> list[cst.CSTNode]:
        """The calls inside ``construction`` that this unit converts with it
        (the rewriter leaves them alone)."""
        return []

    def build(self, converter: "ClassConverter", slot: "Slot", inputs: list[Shape],
              shapes: dict[str, Shape]) -> tuple[str, Shape]:
        """The NNX construction for an attribute holding it (``self.x = nn.Sequential(...)``
        in ``setup``), and the output shape for these inputs."""
        raise NotImplementedError

    def inline(self, rewriter: "CallRewriter", construction: cst.Call, call: cst.Call,
               updated: cst.Call) -> cst.BaseExpression:
        """``nn.X(...)(x)`` created and called at once under ``@nn.compact``: the NNX
        expression replacing ``call`` (set ``rewriter.call_shapes[id(call)]``)."""
        raise NotImplementedError


class SelfCall:
    """``self.<name>(...)`` of a Linen module, e.g. ``self.param('w', init, shape)``."""

    name = ""

    def in_setup(self, converter: "ClassConverter", attribute: str, call: cst.Call) -> None:
        """``self.<attribute> = self.<name>(...)`` in ``setup``: record the ``__init__`` line."""
        raise NotImplementedError

    def in_call(self, rewriter: "CallRewriter", call: cst.Call) -> cst.BaseExpression:
        """The call inside ``__call__`` (or a method it calls): its NNX replacement."""
        raise NotImplementedError


FACTORIES: dict[str, Factory] = {}
SELF_CALLS: dict[str, SelfCall] = {}

_Unit = TypeVar("_Unit", bound=type)


def factory(name: str) -> Callable[[_Unit], _Unit]:
    def register(cls: _Unit) -> _Unit:
        FACTORIES[name] = cls()
        FACTORIES[name].name = name
        return cls
    return register


def self_call(name: str) -> Callable[[_Unit], _Unit]:
    def register(cls: _Unit) -> _Unit:
        SELF_CALLS[name] = cls()
        SELF_CALLS[name].name = name
        return cls
    return register


# the units (imported for their registration)
from nnxlint.conversion.constructs import make_rng, param, rnn, sequential, sow, variable  # noqa: E402,F401

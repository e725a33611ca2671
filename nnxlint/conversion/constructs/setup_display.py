"""``print`` / ``pprint`` of a submodule's variables in ``setup``, as Flax's
design examples write it::

    def setup(self):
        self.dense1 = Dense(features=2)
        self.dense2 = Dense(features=1)
        print(self.dense2.variables)

NNX's ``__init__`` prints ``nnx.state(self.dense2)``, after the submodules are
built.  The line only shows values; what the model computes is the same.  The
text differs: NNX builds its variables at once, so a submodule Linen creates
lazily (printed as an empty ``FrozenDict`` in ``setup``) shows its initial
parameters.  Other arguments must be literals or fields; anything else in the
call keeps the finding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from nnxlint.conversion.base import Unconvertible, self_attribute

if TYPE_CHECKING:
    from nnxlint.conversion.classes import ClassConverter

_PRINTERS = frozenset({"pprint.pprint", "pprint.pp"})


def is_display(converter: ClassConverter, statement: cst.CSTNode) -> bool:
    """``print(...)`` / ``pprint(...)`` alone on a line."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Expr) and isinstance(statement.body[0].value, cst.Call)):
        return False
    func = statement.body[0].value.func
    if isinstance(func, cst.Name) and func.value == "print":
        return converter.env.scope.lookup("print") is None
    return converter.env.resolve(func) in _PRINTERS


def read_display(converter: ClassConverter, statement: cst.SimpleStatementLine) -> None:
    """The ``__init__`` line printing what ``setup`` printed (after the submodules)."""
    call = statement.body[0].value  # type: ignore[attr-defined]
    args = []
    for arg in call.args:
        if arg.star:
            raise Unconvertible("a `print` in `setup` with starred arguments is not converted")
        value = _variables_of(converter, arg.value)
        if value is None:
            value = converter.init_code(arg.value, {})
        args.append(f"{arg.keyword.value}={value}" if arg.keyword is not None else value)
    converter.display_lines.append(f"{converter.env.code(call.func)}({', '.join(args)})")


def _variables_of(converter: ClassConverter, node: cst.BaseExpression) -> str | None:
    """``self.dense2.variables`` of a submodule made in ``setup`` -> ``nnx.state(self.dense2)``."""
    if not (isinstance(node, cst.Attribute) and node.attr.value == "variables"):
        return None
    submodule = self_attribute(node.value)
    if submodule is None or submodule not in converter.slots:
        raise Unconvertible(f"`{converter.env.code(node)}` printed in `setup`: only a submodule's variables "
                            "made before it are converted")
    return f"{converter.env.nnx}.state(self.{submodule})"

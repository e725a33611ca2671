"""Finding the rules: every Rule subclass in the modules of ``nnxlint.rules``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from nnxlint.engine import SourceErrorRule
from nnxlint.rule import Rule


@lru_cache(maxsize=None)
def all_rules() -> dict[str, type[Rule]]:
    """Every rule by code, sorted by code."""
    import nnxlint.rules as package

    found: dict[str, type[Rule]] = {SourceErrorRule.code: SourceErrorRule}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Rule) and value is not Rule
                    and value.__module__ == module.__name__):
                if value.code in found:
                    raise RuntimeError(f"rule code {value.code} is defined twice")
                found[value.code] = value
    return dict(sorted(found.items()))


class UnknownCode(ValueError):
    pass


def expand(selectors, where: str) -> set[str]:
    """Codes matched by selectors: full codes, prefixes (``NNX1``) or ``ALL``."""
    codes = set()
    known = all_rules()
    for selector in selectors:
        selector = selector.strip().upper()
        if not selector:
            continue
        matched = set(known) if selector == "ALL" else {code for code in known if code.startswith(selector)}
        if not matched:
            raise UnknownCode(f"unknown rule code or prefix {selector!r} in {where}; "
                              "`nnxlint rules` lists the codes")
        codes |= matched
    return codes

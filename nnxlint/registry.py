"""Finding the rules: every Rule subclass in the modules of ``nnxlint.rules``.

A rule module's name starts with its code in lower case (``nnx101_missing_rngs``),
so the codes are known without importing the rules (and LibCST): resolving
``--select``/``ignore`` costs nothing on a run that the cache serves.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable

from nnxlint.findings import SOURCE_ERROR_CODE

if TYPE_CHECKING:
    from nnxlint.rule import Rule

_MODULE_CODE = re.compile(r"([a-z]+\d+)_")


def _rule_modules() -> list[tuple[str, str]]:
    """(code, module name) for every rule module."""
    import nnxlint.rules as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        match = _MODULE_CODE.match(info.name)
        if match:
            found.append((match.group(1).upper(), f"{package.__name__}.{info.name}"))
    return found


@lru_cache(maxsize=None)
def rule_codes() -> frozenset[str]:
    return frozenset({SOURCE_ERROR_CODE, *(code for code, _ in _rule_modules())})


@lru_cache(maxsize=None)
def all_rules() -> dict[str, type["Rule"]]:
    """Every rule by code, sorted by code."""
    from nnxlint.engine import SourceErrorRule
    from nnxlint.rule import Rule

    found: dict[str, type[Rule]] = {SourceErrorRule.code: SourceErrorRule}
    for code, module_name in _rule_modules():
        module = importlib.import_module(module_name)
        rules = [value for value in vars(module).values()
                 if isinstance(value, type) and issubclass(value, Rule) and value is not Rule
                 and value.__module__ == module.__name__]
        if [rule.code for rule in rules] != [code]:
            raise RuntimeError(f"{module_name} must define exactly one rule, with code {code}")
        found[code] = rules[0]
    return dict(sorted(found.items()))


class UnknownCode(ValueError):
    pass


def expand(selectors: Iterable[str], where: str) -> set[str]:
    """Codes matched by selectors: full codes, prefixes (``NNX1``) or ``ALL``."""
    codes = set()
    known = rule_codes()
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

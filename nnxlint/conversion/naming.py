"""The naming rule shared by the Linen->NNX conversion and the weight converter.

Linen names submodules it creates inline by class and counter (``Dense_0``,
``BatchNorm_1``); the converted NNX module stores each as an attribute whose name
follows from that auto-name by rule, so a Linen params tree maps onto the NNX
state without per-model name maps.
"""

from __future__ import annotations

import keyword
import re

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``BatchNorm`` -> ``batch_norm``, ``MultiHeadDotProductAttention_0`` -> ..."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def nnx_attribute_name(linen_name: str) -> str:
    """The NNX attribute name for a Linen submodule name.

    Auto-names (``Dense_0``, ``Conv_12``) become snake case (``dense_0``,
    ``conv_12``); explicit names (``name='encoder'`` or a ``setup`` attribute)
    are kept as they are.
    """
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*_\d+", linen_name):
        return snake_case(linen_name)
    return linen_name


def identifier_name(linen_name: str) -> str:
    """The attribute for an explicit Linen name that is no Python identifier
    (BiT's ``name='norm-pre-head'`` -> ``norm_pre_head``): each character an
    identifier cannot hold becomes ``_``, a leading digit or a keyword gets one more."""
    name = re.sub(r"\W", "_", linen_name)
    if name[:1].isdigit():
        name = f"_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def nnx_list_name(linen_class: str) -> str:
    """The ``nnx.List`` attribute holding the modules of one class that a loop
    creates: ``Block`` -> ``blocks``, so that Linen's ``Block_0``, ``Block_1``
    are ``blocks/0``, ``blocks/1``."""
    return snake_case(linen_class) + "s"

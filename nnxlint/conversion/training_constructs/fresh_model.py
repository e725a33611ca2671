"""A model built anew where it is applied: ``models.model(latents).apply({'params': p}, x)``.

A Linen module holds no variables, so real training code (flax's vae, lm1b, wmt) builds
it again inside each step from the same configuration.  In NNX the model *is* its
variables: such a construction is the model that ``init`` built, and the apply becomes
``model(x)`` -- but only where the construction is provably the init site's: the same
callee, the same arguments, each either the same code or a parameter of an enclosing
function that every call of that function fills with the init site's argument
(``train_step(state, batch, key, config.latents)`` for ``models.model(config.latents)``).
A construction with other arguments (lm1b's ``TransformerLM(eval_config)`` beside an
init with ``predict_config``) is another model: no fix, and the reason says which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import libcst as cst

from nnxlint.context import walk
from nnxlint.conversion.base import Unconvertible, arg_keyword

if TYPE_CHECKING:
    from nnxlint.conversion.training import RoleAnalysis


def is_fresh_model(analysis: "RoleAnalysis", node: cst.BaseExpression) -> bool:
    """Whether ``node`` builds the init site's class (its sameness is checked by
    ``check_same_model`` where the construction is converted)."""
    return isinstance(node, cst.Call) and analysis.converter.linen_class(node.func) == analysis.site.class_name


def check_same_model(analysis: "RoleAnalysis", construction: cst.Call) -> set[str]:
    """Raises ``Unconvertible`` unless ``construction`` builds the model the init site builds;
    returns the parameters it reads (``latents``), which the step may no longer need."""
    site = analysis.site.construction
    passed: set[str] = set()
    if construction is site:
        return passed
    code = analysis.env.code
    other = f"`{code(construction)}` builds another model than `init`'s `{code(site)}`"
    if code(construction.func) != code(site.func) or len(construction.args) != len(site.args):
        raise Unconvertible(other)
    for arg, wanted in zip(construction.args, site.args):
        if arg_keyword(arg) != arg_keyword(wanted):
            raise Unconvertible(other)
        if code(arg.value) == code(wanted.value):
            if _same_bindings(analysis, construction, site, arg.value):
                continue
            raise Unconvertible(f"{other}: `{code(arg.value)}` there is bound otherwise than at the init site")
        if not (isinstance(arg.value, cst.Name) and _always_given(analysis, construction, arg.value.value,
                                                                   code(wanted.value))):
            raise Unconvertible(f"{other}: `{code(arg.value)}` there need not be the init site's "
                                f"`{code(wanted.value)}`")
        passed.add(arg.value.value)
    return passed


def _same_bindings(analysis: "RoleAnalysis", node: cst.CSTNode, site: cst.CSTNode, expression: cst.CSTNode) -> bool:
    """The names in ``expression`` mean the same at ``node`` as at ``site``: both sit in the
    same function, or no function around either binds any of them (module globals).  lm1b's
    ``TransformerLM(config)`` in ``train_step(..., config)`` is not its ``predict_step``'s."""
    owner = analysis.owners.get(id(node))
    used = {name.value for name in walk(expression) if isinstance(name, cst.Name)}
    if owner is analysis.owners.get(id(site)):  # one function: its names must not be rebound in between
        return owner is None or all(_binding_count(owner.node, name) <= 1 for name in used)
    return not any(used & _local_names(function) for function in (*_enclosing(analysis, node),
                                                                  *_enclosing(analysis, site)))


def _enclosing(analysis: "RoleAnalysis", node: cst.CSTNode) -> list[cst.FunctionDef]:
    found = []
    function = analysis.owners.get(id(node))
    while function is not None:
        found.append(function.node)
        function = analysis.owners.get(id(function.node))
    return found


def _local_names(function: cst.FunctionDef) -> set[str]:
    """Parameters and every name a statement of the function binds (targets, loops, ``with``)."""
    bound = {param.name.value for param in walk(function.params) if isinstance(param, cst.Param)}
    for node in walk(function.body):
        for target in _targets(node):
            bound.update(name.value for name in walk(target) if isinstance(name, cst.Name))
    return bound


def _binding_count(function: cst.FunctionDef, name: str) -> int:
    params = sum(1 for param in walk(function.params) if isinstance(param, cst.Param) and param.name.value == name)
    return params + sum(1 for node in walk(function.body) for target in _targets(node)
                        for bound in walk(target) if isinstance(bound, cst.Name) and bound.value == name)


def _targets(node: cst.CSTNode) -> list[cst.CSTNode]:
    if isinstance(node, cst.AssignTarget):
        return [node.target]
    if isinstance(node, (cst.AnnAssign, cst.AugAssign, cst.For)):
        return [node.target]
    if isinstance(node, cst.AsName):
        return [node.name]
    if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
        return [node.name]
    return []


def _always_given(analysis: "RoleAnalysis", node: cst.CSTNode, name: str, wanted: str) -> bool:
    """``name`` is a parameter of a function enclosing ``node`` that every call in the file
    passes ``wanted``, and the function is used only by being called."""
    function = analysis.owners.get(id(node))
    while function is not None:
        params = [param.name.value for param in function.node.params.params]
        if name in params:
            return _calls_pass(analysis, function.node.name.value, params.index(name), name, wanted)
        if any(param.name.value == name for param in function.node.params.kwonly_params):
            return _calls_pass(analysis, function.node.name.value, None, name, wanted)
        function = analysis.owners.get(id(function.node))
    return False


def _calls_pass(analysis: "RoleAnalysis", function: str, index: Optional[int], name: str, wanted: str) -> bool:
    code = analysis.env.code
    calls = [node for node in walk(analysis.converter.module)
             if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == function]
    references = [node for node in walk(analysis.converter.module)
                  if isinstance(node, cst.Name) and node.value == function]
    if not calls or len(references) != len(calls) + 1:  # the ``def`` and the calls: nothing passes it on
        return False
    site_owner = analysis.owners.get(id(analysis.site.call))
    for call in calls:
        if analysis.owners.get(id(call)) is not site_owner:  # ``wanted`` is read where the init site reads it
            return False
        given = [arg for arg in call.args if arg_keyword(arg) == name]
        if not given and index is not None and index < len(call.args) and call.args[index].keyword is None \
                and not any(arg.star for arg in call.args[:index + 1]):
            given = [call.args[index]]
        if len(given) != 1 or code(given[0].value) != wanted:
            return False
    return True

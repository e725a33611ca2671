"""A bridged construction whose input sizes are known only from the inputs.

``constructs/to_linen.py`` keeps Linen training code on a converted class through
``nnx.bridge.to_linen(Class, ...)``, which builds the NNX model from the arguments
it is given.  A class that now takes its input sizes (``in_features``, a graph's
``graphs_node_features``) cannot be built so where the code does not know them:
``get_model(config)`` builds the model, another function hands ``init`` the data.
Linen inferred those sizes at the first call; the bridge does the same here, through
a Linen module written once after the file's imports::

    model = models.Critic(hidden=8)
    ->
    model = to_linen_sized(models.Critic, lambda observations, actions, *_, **__: (
        observations.shape[-1], actions.shape[-1]), hidden=8)

``ToLinenSized`` reads the sizes off the inputs of each call (``sizes``, a function
with the NNX ``__call__``'s leading parameters) and calls an ``nnx.bridge.ToLinen``
built with them in front of the other arguments, sharing its scope
(``linen.share_scope``): the variables are laid out exactly as
``nnx.bridge.to_linen`` lays them out.  The NNX class's arguments read as attributes
(``model.dtype``), as the Linen module's fields did: those given by keyword (also to a
``partial`` of it), and the defaults of its ``__init__`` where none is given by position.  With ``lazy_init=True``
(``constructs/picked_by_name.py``), the helper's variant for models holding Linen layers in
``nnx.bridge.ToNNX``, each model is built under ``nnx.bridge.lazy_init`` on the call's
inputs (``built_lazily``), so that ``init`` keeps those layers' variables too.

Refused (the file is then left as it is): a class with input sizes that only its
layers know (``hidden_in_features`` after a flatten: no input gives them), a size
read off an argument that the conversion moved to ``train()``/``eval()``, a
construction through a factory function or a ``partial``, and a file that runs
another method on the model (``method=``: the sizes are read off ``__call__``'s
inputs).
"""

from __future__ import annotations

from typing import Optional, Union

import libcst as cst

from nnxlint import names
from nnxlint.context import walk
from nnxlint.conversion.base import ConvertedClass, method_of
from nnxlint.imports import add_after_imports, add_imports

FUNCTION = "to_linen_sized"
CLASS = "ToLinenSized"
LAZY = "built_lazily"  # (``lazy`` helpers only) builds a model holding ``nnx.bridge.ToNNX`` layers
_REST = ("_", "__")  # the sizes function's catch-alls for the other inputs


def sizes_function(converted: ConvertedClass, graph_size=None) -> Union[str, cst.Lambda]:
    """``lambda x, y, *_, **__: (x.shape[-1], y.shape[-1])``: the input size arguments of
    ``converted``, in its constructor's order, from the inputs of a call; or why not.
    ``graph_size(index, parameter, size)`` turns ``graphs.shape[-1]`` into a graph's
    ``graphs.nodes.shape[-1]`` (``constructs/jraph_graph.py``)."""
    if converted.layer_size_params:
        return (f"the input size `{converted.layer_size_params[0]}` of `{converted.name}` is known to none of its "
                "inputs")
    call = method_of(converted.node, "__call__")
    params = [param.name.value for param in (*call.params.params, *call.params.kwonly_params)][1:] \
        if call is not None else []
    moved = converted.mode.index if converted.mode is not None and converted.mode.name not in params else None
    sizes, last = [], -1
    for parameter, linen_index in converted.size_params.items():
        index = linen_index
        if moved is not None and index >= moved:  # the NNX ``__call__`` no longer takes the moved argument
            if index == moved:
                return f"`{parameter}` is read off `{converted.mode.name}`, which `train()`/`eval()` replaced"
            index -= 1
        if index >= len(params):
            return f"the input that `{parameter}` sizes is not a parameter of `{converted.name}.__call__`"
        axis = converted.size_axes[parameter][1] if parameter in converted.size_axes else -1
        size = f"{params[index]}.shape[{axis}]"
        sizes.append((graph_size(linen_index, parameter, size) if graph_size is not None else None) or size)
        last = max(last, index)
    used = params[:last + 1]
    if set(used) & set(_REST):
        return f"`{converted.name}.__call__` has a parameter named `_` or `__`"
    values = ", ".join(sizes) + ("," if len(sizes) == 1 else "")
    return cst.parse_expression(f"lambda {', '.join(used)}, *_, **__: ({values})")  # type: ignore[return-value]


def helper(module: cst.Module, linen: str, nnx: str, callable_name: str, lazy: bool = False
           ) -> list[cst.BaseStatement]:
    """The Linen module and the function that ``to_linen_sized`` constructions call,
    in the module's indentation and newlines (``lazy``: with ``lazy_init=``, for models
    holding Linen layers in ``nnx.bridge.ToNNX``)."""
    # (``noqa``: nnxlint's own rules would tell the user to migrate the bridge, which goes
    # when the training code converts)
    lines = [f"class {CLASS}({linen}.Module):  # noqa: NNX002 (a bridge for the Linen training code)",
             f'    """`{nnx}.bridge.ToLinen` of an NNX class that takes its input sizes first: `sizes`',
             "    reads them off the inputs of each call, where Linen inferred them; the variables",
             f'    are laid out as `{nnx}.bridge.to_linen` lays them out."""',
             "",
             f"    nnx_class: {callable_name}",
             f"    sizes: {callable_name}",
             "    args: tuple",
             "    kwargs: tuple  # (name, value) pairs: a module must hash (a static argument of `jax.jit`)",
             "    skip_rng: bool = False",
             *(["    lazy_init: bool = False  # it holds Linen layers in `nnx.bridge.ToNNX`"] if lazy else []),
             "",
             "    def __getattr__(self, name):",
             "        # the NNX class's arguments read as the Linen module's fields were (`model.dtype`): those",
             "        # given by keyword (here or to a `partial` of it), and the defaults of its `__init__` where",
             "        # none is given by position (they follow the input sizes)",
             '        nnx_class = self.__dict__.get("nnx_class")',
             '        given = {**getattr(nnx_class, "keywords", {}), **dict(self.__dict__.get("kwargs", ()))}',
             "        if name in given:",
             "            return given[name]",
             '        if nnx_class is not None and not self.__dict__.get("args") and not getattr(nnx_class, "args", ()):',
             '            init = getattr(nnx_class, "func", nnx_class).__init__',
             "            parameter = inspect.signature(init).parameters.get(name)",
             "            if parameter is not None and parameter.default is not parameter.empty:",
             "                return parameter.default",
             "        return super().__getattr__(name)",
             "",
             f"    @{linen}.compact",
             "    def __call__(self, *args, **kwargs):",
             "        sizes = self.sizes(*args, **kwargs)",
             *(["        nnx_class = self.nnx_class",
                "        if self.lazy_init:  # the `ToNNX` layers get their variables from a first call",
                f"            nnx_class = functools.partial({LAZY}, self.nnx_class, args, kwargs)"] if lazy else []),
             f"        model = {nnx}.bridge.ToLinen({'nnx_class' if lazy else 'self.nnx_class'}, (*sizes, *self.args), "
             "dict(self.kwargs), self.skip_rng, None)",
             f"        {linen}.share_scope(self, model)  # noqa: NNX006",
             "        return model(*args, **kwargs)",
             "",
             "",
             *([f"def {LAZY}(nnx_class, inputs, keywords, *args, **kwargs):",
                f'    """The NNX model, run once on the call\'s inputs under `{nnx}.bridge.lazy_init` in eval mode (no',
                '    batch statistic moves; each call of the bridged model sets its mode)."""',
                "    model = nnx_class(*args, **kwargs)",
                "    model.eval()",
                '    keywords = {name: value for name, value in keywords.items() if name != "nnx_method"}',
                f"    {nnx}.bridge.lazy_init(model, *inputs, **keywords)",
                "    return model",
                "",
                ""] if lazy else []),
             f"def {FUNCTION}(nnx_class, sizes, /, *args, skip_rng=False{', lazy_init=False' if lazy else ''}, **kwargs):",
             f'    """`{nnx}.bridge.to_linen` for a class whose input sizes `sizes` reads off its inputs."""',
             f"    return {CLASS}(nnx_class, sizes, args, tuple(kwargs.items()), skip_rng{', lazy_init' if lazy else ''})",
             ""]
    return statements(module, lines)


def statements(module: cst.Module, lines: list[str]) -> list[cst.BaseStatement]:
    """``lines`` (indented by four spaces a level) as statements in the module's
    indentation and newlines."""
    indent, newline = module.default_indent, module.default_newline
    source = newline.join(indent * ((len(line) - len(line.lstrip(" "))) // 4) + line.lstrip(" ") for line in lines)
    return list(cst.parse_module(source, config=module.config_for_parsing).body)


def spelling(scope: names.Scope, qualified: str, wanted: str) -> tuple[Optional[str], bool]:
    """How the file spells ``qualified`` (``flax.linen`` as ``nn``), and whether an import
    must be added to bind it as ``wanted``; (None, False) when ``wanted`` is taken."""
    local = scope.local_name(qualified)
    if local is not None:
        return local, False
    return (None, False) if wanted in scope.bindings else (wanted, True)


_CALLABLE = ("typing.Callable", "collections.abc.Callable")


def problems(module: cst.Module, scope: names.Scope, nnx: str,
             other_methods: bool, lazy: bool = False) -> list[tuple[cst.CSTNode, str]]:
    """What stops ``to_linen_sized`` constructions in the file (``other_methods``: a call's
    ``method=`` was made ``nnx_method=``; ``lazy``: the helper's ``lazy_init`` variant)."""
    found: list[tuple[cst.CSTNode, str]] = []
    if other_methods or any(isinstance(node, cst.Arg) and node.keyword is not None
                            and node.keyword.value == "method" for node in walk(module)):
        found.append((module, "a model whose input sizes are read off `__call__`'s inputs is run through another "
                              "method (`method=`): the construction is not bridged"))
    found += helper_problems(module, scope, (CLASS, FUNCTION, *([LAZY] if lazy else [])),
                             _helper_for(module, scope, nnx, lazy))
    found += [(module, f"the file binds `{name}` to something other than the module")
              for name in _modules_needed(lazy) if name in scope.bindings and scope.local_name(name) != name]
    if _callable_spelling(scope)[0] is None:
        found.append((module, "the file binds `Callable` to something other than `collections.abc.Callable`"))
    return found


def _modules_needed(lazy: bool) -> tuple[str, ...]:
    """The modules the helper names (``inspect.signature``; ``functools.partial`` when lazy)."""
    return ("inspect", "functools") if lazy else ("inspect",)


def helper_problems(module: cst.Module, scope: names.Scope, helper_names: tuple[str, ...],
                    statements: list[cst.BaseStatement]) -> list[tuple[cst.CSTNode, str]]:
    """What stops a bridge helper (``statements``, defining ``helper_names``) from being written
    after the imports: a name the file binds otherwise (not an earlier fix's same helper), or
    ``linen`` bound to something other than ``flax.linen``."""
    found: list[tuple[cst.CSTNode, str]] = []
    taken = [name for name in helper_names if name in scope.bindings]
    if taken and not is_written(module, statements):
        found.append((module, f"the file has a `{taken[0]}` of its own"))
    if spelling(scope, "flax.linen", "linen")[0] is None:
        found.append((module, "the file binds `linen` to something other than `flax.linen`"))
    return found


def with_helper(module: cst.Module, scope: names.Scope, nnx: str, lazy: bool = False) -> cst.Module:
    """``module`` with ``ToLinenSized`` and ``to_linen_sized`` after its imports, and the
    imports they need (once: another models file's fix may have written them)."""
    needed = {"flax.linen"} if spelling(scope, "flax.linen", "linen")[1] else set()
    needed |= {name for name in _modules_needed(lazy) if scope.local_name(name) != name}
    callable_import = _callable_spelling(scope)[1]
    needed |= {callable_import} if callable_import else set()
    return with_statements(module, _helper_for(module, scope, nnx, lazy), needed)


def with_statements(module: cst.Module, written: list[cst.BaseStatement], needed: set[str]) -> cst.Module:
    """``module`` with ``written`` after its imports and the ``needed`` imports, unless
    they are there already (another models file's fix may have written them)."""
    if is_written(module, written):
        return module
    for statement in reversed(written):
        module = add_after_imports(module, statement)
    return add_imports(module, needed) if needed else module


def _helper_for(module: cst.Module, scope: names.Scope, nnx: str, lazy: bool = False) -> list[cst.BaseStatement]:
    linen = spelling(scope, "flax.linen", "linen")[0]
    return helper(module, linen or "linen", nnx, _callable_spelling(scope)[0] or "Callable", lazy)


def is_written(module: cst.Module, statements: list[cst.BaseStatement]) -> bool:
    return all(module.code_for_node(statement).strip() in module.code for statement in statements)


def _callable_spelling(scope: names.Scope) -> tuple[Optional[str], Optional[str]]:
    """How the file spells ``Callable`` (None when the name is taken otherwise), and the
    import to add for it."""
    local = next(filter(None, map(scope.local_name, _CALLABLE)), None)
    if local is not None:
        return local, None
    return (None, None) if "Callable" in scope.bindings else ("Callable", _CALLABLE[1])

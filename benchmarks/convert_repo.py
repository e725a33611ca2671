"""How much of a Linen code base the Linen -> NNX conversion reaches.

    python benchmarks/convert_repo.py PATH [--verify] [--json OUT]

Copies PATH to a temporary directory and runs ``nnxlint check --fix
--unsafe-fixes`` on the copy, as a user would.  Each Linen module class that
NNX002 flags before the fix is looked up after it: it counts as converted only
when it is an ``nnx.Module`` in the output and its file imports (in a fresh
interpreter, from the example's own directory).  Classes are grouped by the
top-level directory under PATH (for google/flax ``examples/``: one group per
example); each unconverted class is listed with the reason NNX002 gives.

With ``--verify`` (needs the verify extra), each example with a spec in
``SPECS`` has its top model built both ways: the Linen original from the
untouched tree (``init`` on the example input, train and eval mode) and the
converted NNX model, into which the Linen initial variables are loaded with
``nnxlint.transplant.load_linen_variables``; the table shows the largest
relative difference of the forward outputs.  The converted model's input-size
parameters (``in_features``, ...) are read off the example input.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

_CLASS = re.compile(r"Linen Module class `([^`]+)`")
_REASON = re.compile(r"\(no fix: (.*)\)$")

# Top models of google/flax examples/ to verify: (file, class, Linen keyword
# arguments as source, example input as source (``name=...`` when passed by keyword),
# call keywords for train, for eval, and optionally the converted model's extra
# constructor arguments: input sizes nothing in the file gives).  Dropout is compared with the same masks:
# both sides draw them from one patched ``jax.random.bernoulli`` stream.
_OGBG_GRAPHS = ("__import__('jraph').GraphsTuple(nodes=jax.random.normal(jax.random.key(1), (5, 3)), "
                "edges=jax.random.normal(jax.random.key(2), (3, 2)), senders=jnp.array([0, 1, 3]), "
                "receivers=jnp.array([1, 2, 4]), globals=jnp.zeros((2, 4)), n_node=jnp.array([3, 2]), "
                "n_edge=jnp.array([2, 1]))")
SPECS: dict[str, list[tuple[str, str, str, str, dict, dict]]] = {
    "imagenet": [("models.py", "ResNet",
                  "dict(stage_sizes=[1, 1], block_cls=ResNetBlock, num_classes=10, num_filters=8)",
                  "jax.random.normal(jax.random.key(1), (2, 32, 32, 3))", {"train": True}, {"train": False}),
                 # as ``_ResNet1Local`` builds it: nn.ConvLocal, kept Linen in nnx.bridge.ToNNX, through the
                 # factory the conversion generates for it
                 ("models.py", "ResNet",
                  "dict(stage_sizes=[1, 1], block_cls=ResNetBlock, num_classes=10, num_filters=8, conv=nn.ConvLocal)",
                  "jax.random.normal(jax.random.key(1), (2, 32, 32, 3))", {"train": True}, {"train": False},
                  "dict(conv=conv_local)")],
    # google-research/vision_transformer: the Mixer (its file imports ``einops``); 16 tokens of 4x4 patches
    "vit_jax": [("models_mixer.py", "MlpMixer",
                 "dict(patches=__import__('types').SimpleNamespace(size=(4, 4)), num_classes=5, num_blocks=2, "
                 "hidden_dim=8, tokens_mlp_dim=6, channels_mlp_dim=10)",
                 "jax.random.normal(jax.random.key(1), (2, 16, 16, 3))", {"train": True}, {"train": False},
                 "dict(mixer_blocks_x_shape_1=16)")],
    # google-research/big_vision: BiT (its stages' output size stored by each stage as ``out_features``)
    "big_vision": [("models/bit.py", "Model", "dict(num_classes=5, width=0.5, depth=(1, 2))",
                    "jax.random.normal(jax.random.key(1), (2, 32, 32, 3))", {"train": True}, {"train": False})],
    # ikostrikov/jaxrl: the twin critics over the MLP of another file (a chain of three files converts)
    "jaxrl": [("networks/critic_net.py", "DoubleCritic", "dict(hidden_dims=(16, 8))",
               "*(jax.random.normal(jax.random.key(1), (2, 5)), jax.random.normal(jax.random.key(2), (2, 3)))",
               {}, {}, "dict(actions_features=3)")],
    "vae": [("models.py", "VAE", "dict(latents=4)", "jax.random.uniform(jax.random.key(1), (2, 784))",
             {"z_rng": "jax.random.key(2)"}, {"z_rng": "jax.random.key(2)"})],
    "ppo": [("models.py", "ActorCritic", "dict(num_outputs=4)",
             "jax.random.uniform(jax.random.key(1), (2, 84, 84, 4))", {}, {},
             "dict(x_shape_1=84, x_shape_2=84)")],  # the spatial axes, which size the flatten after the convolutions
    "linen_design_test": [("dense.py", "Dense", "dict(features=3)", "jax.random.normal(jax.random.key(1), (2, 5))",
                           {}, {}),
                          ("mlp_inline.py", "MLP", "dict(sizes=(4, 3, 2))",
                           "jax.random.normal(jax.random.key(1), (2, 5))", {}, {}),
                          ("mlp_lazy.py", "MLP", "dict()", "jax.random.normal(jax.random.key(1), (2, 3))", {}, {})],
    "nlp_seq": [("models.py", "Transformer",
                 "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=5, emb_dim=16, num_heads=2, "
                 "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, dropout_rate=0.1, attention_dropout_rate=0.1))",
                 "inputs=jax.random.randint(jax.random.key(1), (2, 7), 0, 20)", {"train": True}, {"train": False})],
    "lm1b": [("models.py", "TransformerLM",
              "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=20, emb_dim=16, num_heads=2, "
              "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, dropout_rate=0.1, attention_dropout_rate=0.1))",
              "inputs=jax.random.randint(jax.random.key(1), (2, 7), 0, 20)", {},
              {"model": "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=20, emb_dim=16, num_heads=2, "
                        "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, deterministic=True))"})],
    "wmt": [("models.py", "Transformer",
             "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=20, emb_dim=16, num_heads=2, "
             "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, dropout_rate=0.1, attention_dropout_rate=0.1))",
             "inputs=jax.random.randint(jax.random.key(1), (2, 7), 0, 20)",
             {"targets": "jax.random.randint(jax.random.key(2), (2, 6), 0, 20)"},
             {"targets": "jax.random.randint(jax.random.key(2), (2, 6), 0, 20)",
              "model": "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=20, emb_dim=16, num_heads=2, "
                       "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, deterministic=True))"})],
    # a batch of two small graphs (3 + 2 nodes, 2 + 1 edges); the converted model's graph sizes passed as written;
    # GraphNet with and without its edge model (an update function that is None unless a field says so), and
    # with MLPs of no layers and no skip connections (the graph's sizes then grow from pass to pass)
    "ogbg_molpcba": [(
        "models.py", name, f"dict({kwargs}, deterministic=True)", _OGBG_GRAPHS, {"model": f"dict({kwargs}, deterministic=False)"},
        {"model": f"dict({kwargs}, deterministic=True)"},
        sizes)
        for name, sizes, variant in (
            ("GraphNet", "dict(graphs_node_features=3, graphs_edge_features=2, graphs_global_features=4)",
             "use_edge_model=True"),
            ("GraphNet", "dict(graphs_node_features=3, graphs_edge_features=2, graphs_global_features=4)",
             "use_edge_model=False"),
            ("GraphNet", "dict(graphs_node_features=3, graphs_edge_features=2, graphs_global_features=4)",
             "num_mlp_layers=0, skip_connections=False"),
            ("GraphConvNet", "dict(graphs_node_features=3)", ""))
        for kwargs in ("latent_size=8, message_passing_steps=2, output_globals_size=3, dropout_rate=0.1, "
                       + (variant if "num_mlp_layers" in variant else f"num_mlp_layers=2, {variant}").rstrip(", "),)],
    # encoder-decoder LSTMs; the decoder's custom cell samples a token per step (``self.make_rng('lstm')``): the
    # tokens fed back (teacher_force=False) are drawn alike on both sides (one patched ``jax.random.categorical``)
    "seq2seq": [("models.py", "Seq2seq", f"dict(teacher_force={forced}, hidden_size=6, vocab_size=5)",
                 "*(jax.nn.one_hot(jax.random.randint(jax.random.key(1), (2, 4), 0, 5), 5), "
                 "jax.nn.one_hot(jax.random.randint(jax.random.key(2), (2, 3), 0, 5), 5))", {}, {},
                 "dict(in_features=5, decoder_inputs_features=5)") for forced in (True, False)],
    "sst2": [("models.py", "TextClassifier",
              "dict(embedding_size=8, hidden_size=6, vocab_size=20, output_size=3, dropout_rate=0.3, "
              "word_dropout_rate=0.25, unk_idx=1)",
              "jnp.array([[3, 4, 5, 0], [6, 7, 0, 0]])", {"lengths": "jnp.array([3, 2])", "deterministic": False},
              {"lengths": "jnp.array([3, 2])", "deterministic": True})],
}


# RNG streams the example's models draw from besides params and dropout (given to Linen's init and apply;
# the NNX model's ``nnx.Rngs(0)`` serves them from its default stream).
RNG_STREAMS = {"seq2seq": ("lstm",)}

# Examples whose models name an axis for their collectives (imagenet's ``BatchNorm(axis_name='batch')``):
# both sides run under ``jax.vmap(..., axis_name=...)`` over a new leading axis of one, as under ``pmap``.
AXIS_NAMES = {"imagenet": "batch"}


# Examples whose top model also decodes with a cache: constructor arguments (source) of
# the decoding model, and for an encoder-decoder the targets (source) it decodes.
# Linen's ``init`` makes the cache; the NNX model gets ``init_cache`` on each
# attention that decodes; both then take the tokens one at a time (an encoder-decoder
# encodes the inputs once, through its ``encode``, and steps its ``decode``).
DECODE_SPECS = {
    "lm1b": {"model": "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=20, emb_dim=16, num_heads=2, "
                      "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, deterministic=True, decode=True))"},
    "wmt": {"model": "dict(config=TransformerConfig(vocab_size=20, output_vocab_size=20, emb_dim=16, num_heads=2, "
                     "num_layers=2, qkv_dim=16, mlp_dim=32, max_len=10, deterministic=True, decode=True))",
            "targets": "jax.random.randint(jax.random.key(2), (2, 6), 0, 20)"},
}


@dataclass
class ClassResult:
    path: str
    name: str
    line: int
    converted: bool = False
    # converted, but its file fails at import with the very error the Linen original fails with:
    # nothing can be run on either side, so it is counted apart, never in ``converted``
    converted_unrunnable: bool = False
    reason: str = ""


@dataclass
class Group:
    name: str
    classes: list[ClassResult] = field(default_factory=list)
    forward: dict[str, str] = field(default_factory=dict)  # model -> "train/eval max relative difference"

    @property
    def converted(self) -> int:
        return sum(c.converted for c in self.classes)

    @property
    def unrunnable(self) -> int:
        return sum(c.converted_unrunnable for c in self.classes)


def _nnxlint(*args: str, cwd: Path) -> str:
    command = [sys.executable, "-m", "nnxlint", "check", "--no-cache", "--exit-zero", *args, "."]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False).stdout


def linen_classes(root: Path) -> list[ClassResult]:
    found = []
    # ``--unsafe-fixes``: plain ``check`` defers the conversion, and with it each class's reason
    findings = _nnxlint("--select", "NNX002", "--unsafe-fixes", "--output-format", "json", "-j", "1", cwd=root)
    for finding in json.loads(findings):
        match = _CLASS.search(finding["message"])
        if match:
            reason = _REASON.search(finding["message"])
            found.append(ClassResult(finding["path"].removeprefix("./"), match.group(1), finding["line"],
                                     reason=reason.group(1) if reason else ""))
    return found


def _nnx1_findings(root: Path) -> list[dict]:
    return json.loads(_nnxlint("--select", "NNX1", "--output-format", "json", cwd=root) or "[]")


def _nnx1_counts(root: Path) -> Counter:
    return Counter((finding["path"], finding["code"]) for finding in _nnx1_findings(root))


def _added_findings(root: Path, before: Counter) -> list[str]:
    """The NNX1xx findings of the converted tree beyond the counts per file and rule before the fix:
    code the fix touched or left calling the converted classes the Linen way (a construction
    without ``rngs``, ``init``/``apply``), each a place the user must still finish by hand."""
    seen: Counter = Counter()
    added = []
    for finding in _nnx1_findings(root):
        key = (finding["path"], finding["code"])
        seen[key] += 1
        if seen[key] > before[key]:
            added.append(f"{finding['path'].removeprefix('./')}:{finding['line']} {finding['code']} "
                         f"{finding['message']}")
    return added


def _nnx_classes(source: str) -> set[str]:
    """Classes of a file whose base is ``nnx.Module`` or ``nnx.RNNCellBase`` (or a class of the file that is)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                text = ast.unparse(base)
                if text.endswith(("nnx.Module", "nnx.RNNCellBase")) or text in found:
                    found.add(node.name)
    return found


def _imports(file: Path, root: Path) -> Optional[str]:
    """None when the file imports (from its own directory), else the exception's line (not JAX's
    note on filtered frames that follows it)."""
    code = ("import importlib.util, sys\n"
            # the root goes last: a checkout of a library (flax's own) must not shadow the installed one
            f"sys.path[:0] = [{str(file.parent)!r}]; sys.path.append({str(root)!r})\n"
            f"spec = importlib.util.spec_from_file_location('converted', {str(file)!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines() or ["?"]
    return next((line for line in reversed(lines) if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", line)),
                lines[-1])


def measure(source: Path) -> tuple[list[Group], Path]:
    work = Path(tempfile.mkdtemp(prefix="convert_repo_")) / source.name
    shutil.copytree(source, work, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    before = linen_classes(work)
    _nnxlint("--fix", "--unsafe-fixes", cwd=work)
    after = {(c.path, c.name): c for c in linen_classes(work)}
    import_errors: dict[str, Optional[str]] = {}
    groups: dict[str, Group] = {}
    for result in before:
        path = work / result.path
        if result.path not in import_errors:
            import_errors[result.path] = _imports(path, work) if _nnx_classes(path.read_text()) else None
        still = after.get((result.path, result.name))
        is_nnx = result.name in _nnx_classes(path.read_text())
        error = import_errors[result.path]
        result.converted = is_nnx and still is None and error is None
        if still is not None:
            result.reason = still.reason or result.reason
        elif is_nnx and error is not None:
            original = _imports(source / result.path, source)
            result.converted_unrunnable = original == error
            result.reason = f"converted, but the file does not import: {error}" + (
                "" if original is None else f" (nor does the Linen original: {original})")
        top = result.path.split("/")[0] if "/" in result.path else "."
        groups.setdefault(top, Group(top)).classes.append(result)
    return sorted(groups.values(), key=lambda g: g.name), work


_VERIFY = r'''
import importlib.util, json, sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from nnxlint.transplant import load_linen_variables

def load(path, name, root):
    sys.path[:0] = [str(__import__("pathlib").Path(path).parent), root]  # siblings, and the package root
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

import contextlib

@contextlib.contextmanager
def same_masks():
    """Every dropout mask from one fixed key sequence, and every categorical sample from one key
    (a scanned step is traced once by NNX, more often by Linen's lifted scan: a count would not
    align), on both sides."""
    original, count = jax.random.bernoulli, [0]
    original_categorical = jax.random.categorical
    def bernoulli(key, p=0.5, shape=None, **kwargs):
        count[0] += 1
        return original(jax.random.fold_in(jax.random.key(99), count[0]), p, shape, **kwargs)
    jax.random.bernoulli = bernoulli
    jax.random.categorical = lambda key, logits, *args, **kwargs: original_categorical(
        jax.random.key(98), logits, *args, **kwargs)
    try:
        yield
    finally:
        jax.random.bernoulli = original
        jax.random.categorical = original_categorical

spec = json.loads(sys.argv[1])
linen = load(spec["linen"], "linen_models", spec["linen_root"])
# the Linen tree's modules (``from dense import Dense``, ``from vit_jax import models_resnet``) must not
# serve the converted tree's imports
linen_folder = str(__import__("pathlib").Path(spec["linen"]).parent)
sys.path.remove(linen_folder)
sys.path.remove(spec["linen_root"])
for cached, module in list(sys.modules.items()):
    if (getattr(module, "__file__", None) or "").startswith((linen_folder + "/", spec["linen_root"] + "/")):
        del sys.modules[cached]
converted = load(spec["nnx"], "nnx_models", spec["nnx_root"])
keyword, _, source = spec["input"].rpartition("=") if "=" in spec["input"].split("(")[0] else ("", "", spec["input"])
x = eval(source.lstrip("*"), {"jax": jax, "jnp": jnp})
given = {keyword: x} if keyword else {}
positional = () if keyword else tuple(x) if source.startswith("*") else (x,)  # ``*(a, b)``: several inputs
x = positional[0] if positional else x
kwargs = eval(spec["kwargs"], {**vars(linen)})
nnx_kwargs = {**eval(spec["kwargs"], {**vars(converted)}), **eval(spec["nnx_kwargs"], {**vars(converted)})}
# a mode may build its own model (``"model": kwargs source``): flags fixed by a config, as lm1b's
# train and eval configs; the NNX model is then built from that config too, with no train()/eval()
mode_models = {mode: spec[mode].get("model") for mode in ("train", "eval")}
modes = {mode: {k: eval(v, {"jax": jax, "jnp": jnp}) if isinstance(v, str) else v for k, v in call.items()
                if k != "model"} for mode, call in (("train", spec["train"]), ("eval", spec["eval"]))}
model = getattr(linen, spec["class"])(**kwargs)
streams = {stream: jax.random.key(4 + index) for index, stream in enumerate(spec["streams"])}
variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(3), **streams}, *positional,
                       **given, **modes["eval"])
NNXClass = getattr(converted, spec["class"])
import inspect
signature = inspect.signature(NNXClass.__init__)
for name in signature.parameters:
    if name.endswith("features") and name not in nnx_kwargs:
        nnx_kwargs[name] = x.shape[-1]


def build_nnx(nnx_kwargs):
    built = NNXClass(**nnx_kwargs, rngs=nnx.Rngs(0)) if "rngs" in signature.parameters else NNXClass(**nnx_kwargs)
    if any(isinstance(module, nnx.bridge.ToNNX) for _, module in nnx.iter_modules(built)):
        built.eval()  # Linen layers kept in ToNNX make their variables on a first call (no statistics move)
        nnx.bridge.lazy_init(built, *positional, **given)
        built.train()
    load_linen_variables(built, variables)
    return built


def batched(forward):
    """``forward`` under ``jax.vmap`` over a new leading axis of one named ``spec["axis_name"]``, if any."""
    if not spec["axis_name"]:
        return forward
    def run(*args, **kwargs):
        out = jax.vmap(forward, axis_name=spec["axis_name"])(*[a[None] for a in args],
                                                            **{k: v[None] for k, v in kwargs.items()})
        return jax.tree.map(lambda a: a[0], out)
    return run


nnx_model = build_nnx(nnx_kwargs)
call_names = set(inspect.signature(type(nnx_model).__call__).parameters)
result = {}
for mode, call in modes.items():
    linen_model = model
    if mode_models[mode]:
        linen_model = getattr(linen, spec["class"])(**eval(mode_models[mode], {**vars(linen)}))
        nnx_model = build_nnx({**nnx_kwargs, **eval(mode_models[mode], {**vars(converted)})})
    mutable = [c for c in variables if c != "params"]
    def linen_forward(*args, **kwargs):
        return linen_model.apply(variables, *args, **kwargs, **call,
                                 rngs={"dropout": jax.random.key(3), **streams}, mutable=mutable or False)
    with same_masks():
        out = batched(linen_forward)(*positional, **given)
    out = out[0] if mutable else out
    if not mode_models[mode]:
        getattr(nnx_model, mode)()
    nnx_call = {k: v for k, v in call.items() if k in call_names}
    graphdef, state = nnx.split(nnx_model)  # under vmap, the statistics move in a copy
    def nnx_forward(*args, **kwargs):
        model = nnx.merge(graphdef, state, copy=True) if spec["axis_name"] else nnx_model
        return model(*args, **kwargs, **nnx_call)
    with same_masks():
        got = batched(nnx_forward)(*positional, **given)
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / (np.max(np.abs(np.asarray(a))) + 1e-12))
             for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(got))]
    result[mode] = max(diffs) if diffs else float("nan")
if spec.get("decode"):  # the same tokens one at a time, through the caches
    decoding = spec["decode"]
    linen_decoder = getattr(linen, spec["class"])(**eval(decoding["model"], {**vars(linen)}))
    targets = eval(decoding["targets"], {"jax": jax}) if "targets" in decoding else None
    decoded = x if targets is None else targets
    examples = (jnp.ones(x.shape, x.dtype),) + (() if targets is None else (jnp.ones(targets.shape, targets.dtype),))
    cache = linen_decoder.init(jax.random.key(0), *examples)["cache"]
    decoder = build_nnx({**nnx_kwargs, **eval(decoding["model"], {**vars(converted)})})
    for _, module in nnx.iter_modules(decoder):
        if isinstance(module, nnx.MultiHeadAttention) and module.decode is not False:
            module.init_cache(decoded.shape + (module.in_features,))
    if targets is not None:
        encoded = linen_decoder.apply({"params": variables["params"]}, x, method="encode")
        nnx_encoded = decoder.encode(x)
    diffs = []
    for position in range(3):
        step = decoded[:, position:position + 1]
        if targets is None:
            expected, updates = linen_decoder.apply({"params": variables["params"], "cache": cache}, step,
                                                    mutable=["cache"])
            got = decoder(step)
        else:
            expected, updates = linen_decoder.apply({"params": variables["params"], "cache": cache}, encoded, x,
                                                    step, method="decode", mutable=["cache"])
            got = decoder.decode(nnx_encoded, x, step)
        cache = updates["cache"]
        diffs.append(float(np.max(np.abs(np.asarray(expected) - np.asarray(got)))
                           / (np.max(np.abs(np.asarray(expected))) + 1e-12)))
    result["decode"] = max(diffs)
print(json.dumps(result))
'''


def verify(groups: list[Group], source: Path, work: Path) -> None:
    for group in groups:
        specs = SPECS.get(group.name, [])
        for file, class_name, kwargs, example, train, evaluate, *nnx_only in specs:
            linen_file, nnx_file = source / group.name / file, work / group.name / file
            name = class_name if [spec[1] for spec in specs].count(class_name) == 1 else f"{file}:{class_name}"
            if [spec[:2] for spec in specs].count((file, class_name)) > 1:  # with several sets of arguments
                name = f"{class_name} {kwargs}"
            if class_name not in _nnx_classes(nnx_file.read_text()):
                group.forward[name] = "not converted"
                continue
            spec = dict(linen=str(linen_file), nnx=str(nnx_file), linen_root=str(source), nnx_root=str(work),
                        input=example, kwargs=kwargs,
                        nnx_kwargs=nnx_only[0] if nnx_only else "dict()",
                        train=train, eval=evaluate, decode=DECODE_SPECS.get(group.name),
                        streams=RNG_STREAMS.get(group.name, ()), axis_name=AXIS_NAMES.get(group.name),
                        **{"class": class_name})
            done = subprocess.run([sys.executable, "-c", _VERIFY, json.dumps(spec)], capture_output=True,
                                  text=True, check=False, env={**os.environ, "JAX_PLATFORMS": "cpu"})
            if done.returncode != 0:
                group.forward[name] = "error: " + (done.stderr.strip().splitlines() or ["?"])[-1][:120]
                continue
            diff = json.loads(done.stdout.strip().splitlines()[-1])
            group.forward[name] = f"train {diff['train']:.1e}, eval {diff['eval']:.1e}" + (
                f", 3 decode steps {diff['decode']:.1e}" if "decode" in diff else "")


def table(groups: list[Group]) -> str:
    lines = ["| example | Linen classes | converted | converted, Linen original does not import either "
             "| forward difference (relative, max) |",
             "|---|---:|---:|---:|---|"]
    for group in groups:
        forward = "; ".join(f"{name}: {text}" for name, text in group.forward.items()) or "—"
        lines.append(f"| {group.name} | {len(group.classes)} | {group.converted} | {group.unrunnable} | {forward} |")
    total = sum(len(g.classes) for g in groups)
    converted = sum(g.converted for g in groups)
    unrunnable = sum(g.unrunnable for g in groups)
    lines.append(f"| **total** | **{total}** | **{converted}** ({100 * converted / max(total, 1):.0f}%) "
                 f"| **{unrunnable}** | |")
    return "\n".join(lines)


def reasons(groups: list[Group]) -> str:
    lines = []
    for group in groups:
        for result in group.classes:
            if not result.converted:
                lines.append(f"- {result.path}:{result.line} `{result.name}`: {result.reason}")
    return "\n".join(lines)


# "`A` uses it and stays Linen: ...", "uses `A`, which cannot be converted: ...": a class kept Linen by another's blocker
_TIED = re.compile(r"^(`[^`]*`( of \S+, a Linen class,)? (uses|builds) it( \([^)]*\))?( and stays Linen)?: |"
                   r"uses `[^`]*`, which (cannot be converted|stays Linen): |`[^`]*` stays Linen: )")


def root_cause(reason: str) -> tuple[str, bool]:
    """The blocker behind a chain of classes tied to one another, and whether it was another class's."""
    tied = False
    while True:
        shorter = _TIED.sub("", reason, count=1)
        if shorter == reason:
            return reason.split("; it uses ")[0], tied
        reason, tied = shorter, True


def top_reasons(groups: list[Group], count: int = 10) -> str:
    """The blockers by how many classes they keep Linen (directly or through a class tied to them),
    each with one class it keeps, verbatim."""
    tally: dict[str, list[str]] = defaultdict(list)
    for group in groups:
        for result in group.classes:
            if not result.converted:
                cause, tied = root_cause(result.reason)
                tally[re.sub(r"`[^`]*`", "`…`", cause)].append(
                    f"{result.path}:{result.line} `{result.name}`{' (tied)' if tied else ''}: {cause}")
    ranked = sorted(tally.items(), key=lambda item: -len(item[1]))[:count]
    return "\n".join(f"- {len(examples)}× {examples[0]}" for _, examples in ranked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--verify", action="store_true", help="compare forward outputs (needs the verify extra)")
    parser.add_argument("--json", type=Path, help="also write the per-class results here")
    options = parser.parse_args()
    source = options.path.resolve()
    anti_patterns = _nnx1_counts(source)
    groups, work = measure(source)
    added = _added_findings(work, anti_patterns)
    if options.verify:
        verify(groups, source, work)
    print(table(groups))
    print("\nUnconverted classes:\n" + (reasons(groups) or "none"))
    print("\nTop reasons:\n" + (top_reasons(groups) or "none"))
    print(f"\nNNX1xx findings the fix added ({len(added)}: code still building or calling converted "
          "classes the Linen way, to finish by hand):\n" + ("\n".join(f"- {line}" for line in added) or "none"))
    if options.json:
        options.json.write_text(json.dumps([dict(asdict(g), converted=g.converted) for g in groups], indent=1))
    shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

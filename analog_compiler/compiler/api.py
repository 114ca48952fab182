"""``convert`` and ``convert_to_analog``: the one-call conversion of a digital model.

Conversion, per module, bottom-up (children before their parent):

1. capture: trace the module's own ``forward`` with ``torch.fx``, every submodule a leaf
   (one ``call_module`` node under its qualified name);
2. on that graph, run the passes: BatchNorm folding (optional), functional -> module
   canonicalization, mapping of the called matrix modules;
3. if the module's code cannot be traced, it keeps its code, its submodules are still converted
   (module swap) and the failure is recorded in ``ConversionLog.fallbacks``;
4. a final sweep maps matrix modules no graph showed (never called, or inside leaves such as
   ``nn.TransformerEncoderLayer``).

A module is replaced by its ``GraphModule`` only when its graph had to change (a functional
product became an analog layer); otherwise the original module object stays, with its class,
call signature and output types, and only its matrix submodules are swapped.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import fx, nn

from ..conversion_log import LOG_ATTRIBUTE, ConversionLog, LayerRecord
from ..inputs import ExampleInputs, normalize_example_inputs, run_example_inputs
from ..nn.base import AnalogLayerBase
from ..nn.containers import ensure_analog_container
from ..progress import ProgressBar
from .capture import has_forward, placeholders_of, propagate_shapes, trace
from .copying import copy_sharing_weights, unshare
from .layer_map import DEFAULT_LAYER_MAP, check_layer_map
from .passes import (
    CANONICALIZE_FUNCTIONAL,
    FOLD_BATCHNORM,
    MAP_MODULES,
    PassError,
    disable_fused_transformer_paths,
    qualify,
    run_pipeline,
)
from .policy import LayerPolicy, PolicyResolver, RPUConfig, check_rpu_config
from .rewrite import ANALOG_LEAVES, ConversionContext, direct_matrix_parameters, set_submodule


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run with every submodule in eval mode (no BatchNorm statistics updates), then restore."""
    # Weak references: a layer replaced during conversion must not outlive its replacement.
    modes = [(weakref.ref(m), m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for ref, mode in modes:
            m = ref()
            if m is not None:
                m.training = mode


def convert(model: nn.Module, rpu_config: RPUConfig, *, example_inputs: Any = None,
            layer_map: dict[type, type] | None = None,
            policy: LayerPolicy | dict[Any, RPUConfig | None] | None = None,
            exclude: Iterable[str | type] | None = None, fold_batchnorm: bool = False,
            inplace: bool = False, progress: bool | None = None) -> nn.Module:
    """Map every matrix layer of ``model`` onto analog tiles; returns the converted model.

    Args:
        model: the digital model (not modified unless ``inplace``).
        rpu_config: the global tile config (``InferenceRPUConfig`` or ``FloatingPointRPUConfig``).
        example_inputs: optional inputs (a tensor, a tuple/list of positional inputs or a dict
            of keyword inputs: the rule of ``analog_compiler.inputs``); they are checked
            against the model (``ValueError`` naming the shapes otherwise) and annotate the
            graph with shapes (``node.meta['tensor_meta']``).
        layer_map: digital type -> analog class (default ``DEFAULT_LAYER_MAP``); subclasses of a
            key are mapped too (``NonDynamicallyQuantizableLinear`` is an ``nn.Linear``).
        policy: per-layer configs, see ``LayerPolicy`` (precedence: exclude > exact name >
            regex > type > global; ``None`` keeps a layer digital). A dict is read as
            ``LayerPolicy.coerce`` describes. A regex or name that matches no matrix layer
            raises a ``UserWarning`` listing it.
        exclude: qualified names (whole subtrees) or module types to keep digital.
        fold_batchnorm: fold ``conv/linear -> BatchNorm`` pairs (running statistics) before
            mapping; the BatchNorm becomes ``nn.Identity``.
        inplace: convert ``model`` itself instead of a deep copy (use the returned object:
            it is ``model`` unless the root itself is a layer or its code was rewritten).
            Without it, the copy never duplicates the weights of the layers that become
            analog (their tiles hold the only copy), so peak memory stays near the original
            model plus the analog one.
        progress: a progress bar over the matrix layers on stderr: ``True`` always, ``False``
            never, ``None`` (default) when the conversion takes longer than two seconds.

    What is mapped: ``nn.Linear`` (and subclasses), ``nn.Conv1d/2d/3d``, GPT-2 style
    ``Conv1D`` (weight ``[in, out]``: becomes an ``AnalogLinear`` with the transposed weight),
    ``nn.MultiheadAttention`` (becomes ``AnalogMultiheadAttention`` with ``q_proj``, ``k_proj``,
    ``v_proj``, ``out_proj``), and in traceable code ``F.linear``, ``F.conv1d/2d/3d``,
    ``x @ W``/``torch.matmul``/``torch.mm``/``torch.addmm`` whose weight is a parameter.

    ``state_dict`` naming: a mapped module keeps its name and its weights move into its tile
    array: ``fc1.weight`` -> ``fc1.analog_module.weight``, ``fc1.bias`` ->
    ``fc1.analog_module.bias`` (plus the array's buffers ``mapping_scales``,
    ``chip_weight``, ... and ``_extra_state``). A GPT-2 ``Conv1D`` ``h.0.attn.c_attn``
    stores ``h.0.attn.c_attn.analog_module.weight`` as ``[out, in]``. An attention module
    ``attn`` stores ``attn.q_proj.analog_module.weight``, ... , ``attn.out_proj.analog_module
    .weight``. A functional product on parameter ``blk.w`` becomes the layer ``blk.w_linear``
    (``blk.w_conv`` for convolutions) and ``blk.w`` itself is removed. A folded BatchNorm's
    entries disappear. Everything else keeps its key.

    The result keeps the original model object (class, call signature, output structure such
    as dicts or HuggingFace ``ModelOutput``) unless a functional product had to be rewritten,
    in which case the traced part becomes a ``torch.fx.GraphModule`` with the same inputs,
    outputs, submodules and buffers. The ``ConversionLog`` is attached as
    ``model.analog_conversion_log``: one record per matrix layer (mapped or digital with the
    reason) and the submodules that could not be traced (``fallbacks``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``rpu_config``, a policy value, a layer
            map entry or ``example_inputs`` has the wrong type.
        ValueError: ``example_inputs`` do not fit the model.
    """
    return _convert(model, rpu_config, example_inputs=example_inputs, layer_map=layer_map,
                    policy=policy, exclude=exclude, fold_batchnorm=fold_batchnorm,
                    inplace=inplace, progress=progress, verb="convert")


def convert_to_analog(module: nn.Module, rpu_config: RPUConfig,
                      tile_module_class: type | None = None,
                      specific_rpu_config_fun: Callable[[str, nn.Module, RPUConfig], RPUConfig]
                      | None = None, module_name: str = "", ensure_analog_root: bool = True,
                      exclude_modules: list[str] | None = None, inplace: bool = False,
                      verbose: bool = False) -> nn.Module:
    """aihwkit's ``convert_to_analog`` with aihwkit's argument meanings, on top of ``convert``.

    Args:
        module: the digital model.
        rpu_config: the config of every converted layer.
        tile_module_class: the ``TileArray`` subclass the layers build.
        specific_rpu_config_fun: ``fun(qualified_name, digital_module, rpu_config_copy) ->
            rpu_config`` per layer (functional products get their ``nn.Linear``/``nn.ConvNd``
            form as ``digital_module``).
        module_name: the root's name, prefixed to every qualified name (``module_name.fc1``).
        ensure_analog_root: give the root the analog model verbs
            (``program_analog_weights``, ``drift_analog_weights``, ``analog_tile_count``, ...):
            it is returned as ``AnalogWrapper(root)`` (class ``AnalogWrapper<Class>``, a subclass
            of its own class, as in aihwkit), unless it is an analog layer or container
            already; ``state_dict`` keys do not change.
        exclude_modules: qualified names whose subtrees stay digital.
        inplace: convert ``module`` itself instead of a deep copy.
        verbose: print every layer decision.
    """
    model = _convert(module, rpu_config, exclude=exclude_modules, inplace=inplace,
                     tile_module_class=tile_module_class, config_fn=specific_rpu_config_fun,
                     root_name=module_name, verbose=verbose, verb="convert_to_analog")
    if ensure_analog_root and not isinstance(model, AnalogLayerBase):
        model = ensure_analog_container(model)
    return model


def _convert(model: Any, rpu_config: Any, *, example_inputs: Any = None,
             layer_map: Any = None, policy: Any = None, exclude: Any = None,
             fold_batchnorm: bool = False, inplace: bool = False,
             tile_module_class: type | None = None, config_fn: Callable | None = None,
             root_name: str = "", verbose: bool = False, verb: str = "convert",
             progress: bool | None = None) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{verb}: model must be an nn.Module, got {type(model).__name__}")
    check_rpu_config(rpu_config, f"{verb}: rpu_config")
    inputs = None if example_inputs is None else normalize_example_inputs(example_inputs, verb)
    if config_fn is not None and not callable(config_fn):
        raise TypeError(f"{verb}: specific_rpu_config_fun must be callable, got {config_fn!r}")
    layer_map = check_layer_map(DEFAULT_LAYER_MAP if layer_map is None else layer_map)
    layer_policy = LayerPolicy.coerce(policy, exclude)
    if fold_batchnorm and model.training:
        warnings.warn("fold_batchnorm=True folds the running statistics: the converted model "
                      "computes inference-mode BatchNorm even in training mode", UserWarning,
                      stacklevel=3)
    log = ConversionLog(rpu_config.to_dict())
    ctx = ConversionContext(rpu_config, PolicyResolver(layer_policy, rpu_config), layer_map, log,
                            tile_module_class, config_fn, verbose)
    shared: set[int] = set()
    if not inplace and fold_batchnorm:  # folding scales weights in place: copy them all
        model = copy.deepcopy(model)
    elif not inplace:
        model, shared = copy_sharing_weights(model, ctx.is_matrix_module)
    ctx.progress = ProgressBar(sum(map(ctx.is_matrix_module, model.modules())),
                               "convert: layers", enabled=progress)
    passes = ([FOLD_BATCHNORM] if fold_batchnorm else []) + [CANONICALIZE_FUNCTIONAL, MAP_MODULES]
    originals = weakref.WeakSet(model.modules())
    ctx.modes = {id(m): m.training for m in model.modules()}
    with _eval_mode(model):  # shape checks must not touch BatchNorm statistics
        if inputs is not None:
            _check_inputs(model, ctx, inputs, verb)
        converted = _process(model, root_name, ctx, passes)
        ctx.keep_mode(converted, model)
    if converted is model:
        log.capture = "module-swap" if root_name in log.fallbacks else "fx"
    else:
        log.capture = "fx"
    converted = _sweep(converted, root_name, ctx)
    _set_new_modes(converted, originals, ctx.new_modes)
    ctx.progress.close()
    unshare(converted, shared)
    _order_records(converted, root_name, log)
    disable_fused_transformer_paths(converted)
    ctx.resolver.warn_unused()
    object.__setattr__(converted, LOG_ATTRIBUTE, log)
    return converted


def _set_new_modes(root: nn.Module, originals: weakref.WeakSet,
                   new_modes: weakref.WeakKeyDictionary) -> None:
    """Give every module the conversion built the training mode of the module it replaced, or
    (built inside a graph: functional layers, submodules of new layers) its parent's; the
    model's own modules got theirs back when the conversion's eval mode ended."""
    stack = [(root, root.training)]
    while stack:
        module, parent_mode = stack.pop()
        if module not in originals:
            module.training = new_modes.get(module, parent_mode)
        stack.extend((child, module.training) for child in module.children())


def _process(module: nn.Module, prefix: str, ctx: ConversionContext, passes: list) -> nn.Module:
    """Convert ``module`` (qualified name ``prefix``) bottom-up; returns what to put in its
    place. Each module's own code is traced with every submodule as a leaf, so a graph (and a
    ``GraphModule`` replacing a module) covers exactly one module's ``forward``."""
    if ctx.is_leaf(module):
        return ctx.map_module(module, prefix) if ctx.is_matrix_module(module) else module
    for name, child in list(module.named_children()):
        if not ctx.is_leaf(child):  # leaf layers are mapped by the parent's graph or the sweep
            new = _process(child, qualify(prefix, name), ctx, passes)
            if new is not child:
                ctx.keep_mode(new, child)
                setattr(module, name, new)
    if not has_forward(module):  # a container (nn.ModuleList): nothing of its own to trace
        return module
    gm, error = trace(module, lambda m, qn: True)
    if gm is None:
        ctx.log.fallbacks[prefix] = error
        for pname in direct_matrix_parameters(module):
            ctx.record(qualify(prefix, pname), "parameter",
                       f"untraceable: {error} (its use in {type(module).__name__}.forward "
                       "is unknown)")
        return module
    optional = _optional_args_in_use(gm)
    if optional:
        ctx.keep_functional = (f"untraceable: {type(module).__name__}.forward uses the optional "
                               f"argument(s) {', '.join(optional)} (default None); one graph "
                               "cannot serve both cases")
    first_record = len(ctx.log.records)
    try:
        changed = run_pipeline(gm, ctx, prefix, passes)
    except PassError as exc:  # never an FX traceback: keep the module's code, say why
        ctx.log.fallbacks[prefix] = str(exc)
        _swap_after_failed_pipeline(module, gm, ctx, prefix, first_record, str(exc))
        return module
    finally:
        ctx.keep_functional = ""
    if changed.get(CANONICALIZE_FUNCTIONAL.name):
        return gm
    for name, child in gm.named_children():  # swaps of direct children: keep the original
        if getattr(module, name, None) is not child:
            setattr(module, name, child)
    return module


def _swap_after_failed_pipeline(module: nn.Module, gm: fx.GraphModule, ctx: ConversionContext,
                                prefix: str, first_record: int, error: str) -> None:
    """A pass failed on ``module``'s graph: its own code stays (module swap). The analog layers
    the graph already swapped in for direct children go in as they would without a graph;
    a record the pipeline made for a layer that is not in ``module`` now (a functional product
    rewritten in the abandoned graph) says it stayed digital."""
    for name, child in gm.named_children():
        old = getattr(module, name, None)
        if old is not child and isinstance(child, ANALOG_LEAVES) and isinstance(old, nn.Module) \
                and ctx.is_matrix_module(old):
            ctx.keep_mode(child, old)
            setattr(module, name, child)
    names = {qualify(prefix, n) for n, _ in module.named_modules()}
    ctx.unrecord(f"untraceable: {error}", lambda n: n not in names, start=first_record)


def _optional_args_in_use(gm: nn.Module) -> list[str]:
    """Inputs with default ``None`` that the traced code uses: tracing took the "given" branch
    of any ``if arg is not None``, so the graph would fail (or differ) when they are None."""
    return [n.target for n in gm.graph.nodes
            if n.op == "placeholder" and n.args and n.args[0] is None and n.users]


def _check_inputs(model: nn.Module, ctx: ConversionContext, inputs: ExampleInputs,
                  verb: str) -> None:
    """Shape propagation over the whole traced model (a ``ValueError`` naming the inputs and
    the failing node), or one plain run where the model cannot be traced or its graph holds
    only the branch of an optional input the inputs leave out."""
    gm, _ = trace(model, lambda m, qn: ctx.is_leaf(m)) if has_forward(model) else (None, "")
    if gm is not None:
        given = {n.target for n in placeholders_of(gm.graph)[:len(inputs.args)]}
        if set(_optional_args_in_use(gm)) - given - set(inputs.kwargs):
            gm = None
    if gm is not None:
        propagate_shapes(gm, inputs, verb)
    else:
        run_example_inputs(model, inputs, verb)


def _sweep(model: nn.Module, root_name: str, ctx: ConversionContext) -> nn.Module:
    """Map matrix modules no graph showed (inside leaf modules such as
    ``nn.TransformerEncoderLayer``, or never called)."""
    owned: list[str] = []  # a matrix layer's submodules belong to it (MHA's out_proj)
    for name, module in list(model.named_modules()):
        if any(name.startswith(s + ".") for s in owned) or not ctx.is_matrix_module(module):
            continue
        owned.append(name)
        full = qualify(root_name, name)
        if full in ctx.recorded or any(r.startswith(full + ".") for r in ctx.recorded):
            continue
        new = ctx.map_module(module, full)
        if new is not module:
            if not name:
                return new
            set_submodule(model, name, new)
    return model


def _order_records(model: nn.Module, root_name: str, log: ConversionLog) -> None:
    """Sort the records in module order (the order of ``named_modules``, which follows the
    definition and, for most models, the execution order); a record that names no module (a
    parameter, ``attn.in_proj``) follows its closest named parent."""
    index = {qualify(root_name, n): i for i, n in enumerate(n for n, _ in model.named_modules())}

    def key(item: tuple[int, LayerRecord]) -> tuple[int, int]:
        pos, record = item
        name = record.name
        while name not in index and "." in name:
            name = name.rpartition(".")[0]
        return index.get(name, len(index)), pos

    log.records[:] = [r for _, r in sorted(enumerate(log.records), key=key)]

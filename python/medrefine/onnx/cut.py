"""Cut an ONNX segmentation network into a frozen graph and the nodes of its head.

The cut names nodes or tensors. A node name puts that node and everything downstream of it in the
head (as :meth:`medrefine.SplitModel.from_module` does with submodules); a tensor name starts the
head at that tensor: the nodes that consume it, and everything downstream of them. The head is
then trimmed to the nodes the network's output (its first graph output, the logits) depends on.

Every tensor that flows from the rest of the graph into the head becomes one output of the frozen
graph (an ONNX model of its own, ``image -> features``), in the order the rest of the graph
computes them; the converted head takes them positionally in that order. Constants
(:mod:`medrefine.onnx.fold`) are not features: they are folded into the head (weights, sizes).
Shape arithmetic the head reads (sizes to resize to, taken from the image's shape) is moved into
the head, and a tensor whose shape alone it reads becomes an empty size carrier
(:mod:`medrefine.onnx.shapes`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx
from onnx.utils import Extractor

from medrefine.backends.onnx_file import OnnxSource, load
from medrefine.errors import UnsupportedModelError
from medrefine.onnx.fold import Constants, Shapes, constant_values, infer_shapes
from medrefine.onnx.shapes import (
    SHAPE_OPS,
    Carrier,
    add_carriers,
    blocking_node,
    pull_shape_chains,
)


@dataclass(frozen=True)
class Cut:
    """An ONNX network cut at its head.

    Attributes:
        frozen: ONNX model ``image -> features`` (the part run once per image).
        head: the head's nodes, in topological order.
        features: names of the tensors entering the head; the frozen graph's outputs, in order.
        output: name of the head's output tensor (the network's logits ``(1, K, *spatial)``).
        constants: values of the constant tensors the head reads (weights), by name.
        ranks: rank of each tensor whose shape inference could tell it, by name.
        opset: the model's version of the default ONNX operator set.
        carriers: the features that carry a tensor's shape, not its values (empty
            ``(N, 0, *spatial)``), by feature name (:mod:`medrefine.onnx.shapes`).
    """

    frozen: onnx.ModelProto
    head: tuple[onnx.NodeProto, ...]
    features: tuple[str, ...]
    output: str
    constants: Constants
    ranks: dict[str, int]
    opset: int
    carriers: dict[str, Carrier] = field(default_factory=dict)


def opset_version(model: onnx.ModelProto) -> int:
    """Version of the default (``ai.onnx``) operator set the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise UnsupportedModelError("the ONNX model does not import the default operator set")


def _suggest(name: str, model: onnx.ModelProto) -> str:
    names = [n.name for n in model.graph.node if n.name]
    names += [t for n in model.graph.node for t in n.output]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    tail = [n.name for n in model.graph.node[-6:] if n.name]
    hint = f"close names: {close}" if close else f"the last nodes are {tail}"
    return f"no node or tensor named {name!r} in the ONNX graph; {hint}"


def _seeds(model: onnx.ModelProto, cut: Sequence[str]) -> tuple[set[int], set[str]]:
    """Indices of the seed nodes and names of the seed tensors (a node name wins a tie)."""
    if not cut:
        raise UnsupportedModelError("cut is empty: name the head's first nodes or input tensors")
    by_name = {n.name: i for i, n in enumerate(model.graph.node) if n.name}
    tensors = {t for n in model.graph.node for t in n.output} | {i.name for i in model.graph.input}
    nodes, seeds = set[int](), set[str]()
    for name in cut:
        if name in by_name:
            nodes.add(by_name[name])
        elif name in tensors:
            seeds.add(name)
        else:
            raise UnsupportedModelError(_suggest(name, model))
    return nodes, seeds


def _downstream(model: onnx.ModelProto, cut: Sequence[str]) -> list[int]:
    """Indices of the seed nodes and of every node downstream of the seeds."""
    seed_nodes, tainted = _seeds(model, cut)
    found = []
    for i, node in enumerate(model.graph.node):  # ONNX keeps nodes in topological order
        if i in seed_nodes or any(t in tainted for t in node.input):
            found.append(i)
            tainted.update(t for t in node.output if t)
    return found


def _needed_by(
    model: onnx.ModelProto, candidates: list[int], output: str, constants: Constants
) -> list[int]:
    """The candidate nodes ``output`` depends on through non-constant tensors, in graph order."""
    producer = {t: i for i in candidates for t in model.graph.node[i].output if t}
    keep, stack = set[int](), [output]
    while stack:
        index = producer.get(stack.pop())
        if index is not None and index not in keep:
            keep.add(index)
            stack.extend(t for t in model.graph.node[index].input if t and t not in constants)
    return sorted(keep)


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"the ONNX network must take one input (the image), it takes {[i.name for i in inputs]}"
        )
    return inputs[0]


def _float_info(name: str) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)


def _frozen_model(
    inferred: onnx.ModelProto, image: str, features: list[str], carriers: dict[str, Carrier]
) -> onnx.ModelProto:
    """``image -> features`` as an ONNX model; a feature that is the image itself is copied,
    a size carrier computed (:func:`~medrefine.onnx.shapes.add_carriers`)."""
    graph = inferred.graph
    add_carriers(graph, carriers)
    known = {v.name for v in [*graph.value_info, *graph.input, *graph.output]}
    for name in features:
        if name not in known:  # shape inference could not type it: say float32, unknown shape
            graph.value_info.append(_float_info(name))
    outputs = list(features)
    if image in outputs:
        copy = f"{image}__feature"
        graph.node.append(onnx.helper.make_node("Identity", [image], [copy]))
        graph.value_info.append(_float_info(copy))
        outputs[outputs.index(image)] = copy
    return Extractor(inferred).extract_model([image], outputs)


def _check_features(model: onnx.ModelProto, features: list[str], image: str) -> None:
    """Refuse a feature that does not depend on the image (a constant the fold did not reach)."""
    producers = {t: n for n in model.graph.node for t in n.output if t}
    for name in features:
        stack, seen, from_image = [name], set[str](), False
        while stack and not from_image:
            t = stack.pop()
            from_image = t == image
            if t not in seen and t in producers:
                seen.add(t)
                stack.extend(i for i in producers[t].input if i)
        if not from_image:
            node = producers.get(name)
            op = f"{node.op_type} node {node.name!r}" if node else "a graph input"
            raise UnsupportedModelError(
                f"the head reads {name!r}, a constant computed by {op} that cannot be folded"
            )


def _check_maps(model: onnx.ModelProto, features: list[str], shapes: Shapes) -> None:
    """Refuse a feature that is not a feature map ``(N, C, *spatial)``: a vector the head reads
    (sizes computed by an operator the head cannot take over) cannot be cached or cropped."""
    for name in features:
        shape = shapes.get(name)
        if shape is None or len(shape) >= 3:
            continue
        found = blocking_node(model.graph, name)
        by = f" by {found.op_type} node {found.name!r}" if found is not None else ""
        raise UnsupportedModelError(
            f"the head reads {name!r}, a {len(shape)}-D tensor computed{by}, not a feature map "
            "(N, C, *spatial); shape arithmetic moves into the head when it consists of "
            f"{', '.join(sorted(SHAPE_OPS))} alone"
        )


def cut_graph(model: onnx.ModelProto, cut: Sequence[str]) -> Cut:
    """Cut ``model`` at the nodes or tensors named in ``cut``; see the module docstring.

    Raises:
        UnsupportedModelError: a name is neither a node nor a tensor of the graph, the network's
            output does not depend on the head, or the network takes more than one input.
    """
    image = _image_input(model).name
    output = model.graph.output[0].name
    inferred, shapes = infer_shapes(model)
    constants = constant_values(model, shapes)
    head_ids = _needed_by(model, _downstream(model, cut), output, constants)
    head_ids, carriers = pull_shape_chains(model, head_ids, constants, shapes)
    if output not in {t for i in head_ids for t in model.graph.node[i].output}:
        raise UnsupportedModelError(
            f"the network's output {output!r} does not come from the head {list(cut)}; "
            "name nodes or tensors its output depends on"
        )
    head = tuple(model.graph.node[i] for i in head_ids)
    produced = {t for n in head for t in n.output}
    entering = {t for n in head for t in n.input if t and t not in produced and t not in constants}
    order = [image] + [t for n in model.graph.node for t in n.output]
    sources = [t for t in order if t in entering]
    _check_features(model, sources, image)
    _check_maps(model, sources, shapes)
    carried = {c.source: name for name, c in carriers.items()}
    features = [carried.get(t, t) for t in sources]
    frozen = _frozen_model(inferred, image, features, carriers)
    used = {t for n in head for t in n.input}
    return Cut(
        frozen=frozen,
        head=head,
        features=tuple(features),
        output=output,
        constants={k: v for k, v in constants.items() if k in used},
        ranks={name: len(shape) for name, shape in shapes.items()},
        opset=opset_version(model),
        carriers=carriers,
    )


def scope_nodes(source: OnnxSource, scope: str) -> list[str]:
    """Names of the nodes PyTorch's exporter placed under submodule ``scope``, in graph order.

    ``torch.onnx.export`` names each node ``/<scope>/<scope>/.../<Op>``, one segment per module
    level (e.g. ``/head/head.0/Conv`` for ``net.head[0]``, ``/model/model.2/conv/ConvTranspose``
    for MONAI's ``UNet.model[2].conv``). ``scope`` is the leading part, e.g. ``"head"`` or
    ``"model/model.2"``. The result is a valid ``cut`` for :func:`cut_graph`.

    Raises:
        NotFoundError, InputError: no file, or not a readable ONNX model (:func:`load`).
        UnsupportedModelError: no node is under ``scope``.
    """
    prefix = "/" + scope.strip("/") + "/"
    graph = load(source).graph
    names = [n.name for n in graph.node if n.name.startswith(prefix)]
    if not names:
        scoped = any(n.name.count("/") > 1 for n in graph.node)
        why = (
            ""
            if scoped
            else (
                " (its node names carry no module scopes, as after a TorchScript module was "
                "exported a second time by torch.onnx.export directly)"
            )
        )
        raise UnsupportedModelError(
            f"no node of the ONNX graph is under scope {scope!r}{why}; cut by the module's "
            "parameter names instead: module_nodes(path, 'dotted.module.name')"
        )
    return names


def module_nodes(source: OnnxSource, module: str) -> list[str]:
    """Names of the nodes that read a parameter of PyTorch submodule ``module`` (dotted, as
    ``SplitModel.from_module``'s ``head``, e.g. ``"model.2"``), in graph order: a valid ``cut``.

    PyTorch's exporter names each weight initializer by its ``state_dict`` key
    (``model.2.conv.weight``) whether the network was an ``nn.Module``, a traced or scripted
    module or one loaded with ``torch.jit.load``, whereas node scopes
    (:func:`scope_nodes`) exist only for an ``nn.Module`` or a module traced in the same process
    and exported once. The head's first operation must own a parameter (a convolution, a norm
    with affine weights); a head starting with an interpolation needs :func:`scope_nodes` or a
    tensor name.

    Raises:
        NotFoundError, InputError: no file, or not a readable ONNX model (:func:`load`).
        UnsupportedModelError: no node reads a parameter of ``module``.
    """
    prefix = module.strip(".") + "."
    graph = load(source).graph
    params = {i.name for i in graph.initializer if i.name.startswith(prefix)}
    names = [n.name for n in graph.node if any(i in params for i in n.input)]
    if not names:
        found = sorted({i.name.rsplit(".", 1)[0] for i in graph.initializer})[:20]
        raise UnsupportedModelError(
            f"no node of the ONNX graph reads a parameter of module {module!r}; modules with "
            f"parameters include {found}"
        )
    return names

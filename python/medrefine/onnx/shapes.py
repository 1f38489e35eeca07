"""Shape arithmetic that enters a head: computed in the head, from the shapes of its features.

PyTorch exports ``F.interpolate(x, size=image.shape[-2:])`` (torchvision's segmentation
models upsample their logits so) as ``Shape(image) -> Gather -> Unsqueeze -> Concat -> Cast``
feeding the ``sizes`` of a ``Resize`` in the head. With dynamic spatial axes that vector is not
a constant (:mod:`medrefine.onnx.fold` folds it only where the sizes are fixed), and a vector of
integers cannot be a cached feature: the engine caches, crops and pads feature maps.

So the cut moves such a computation into the head, up to the ``Shape`` nodes it starts from
(:func:`pull_shape_chains`). A ``Shape`` node's input that the head reads for nothing else is
replaced by a *size carrier*: the frozen graph returns ``Slice(x, axis 1, 0:0)``, an empty
float32 tensor ``(N, 0, *spatial)`` of ``x``'s spatial size that costs no memory and is
cached, cropped and padded like every other feature (as :func:`medrefine.models.split.size_carrier`
does for a ``torch.fx`` split). The converted head reads the size off it at run time, so a head
run on another image, or on a crop of the features, computes the sizes that input implies;
:class:`medrefine.engine.head.runner.HeadRunner` compares crops with the whole image once per image
and evaluates the whole image where they differ.

Only pure shape arithmetic moves: every node of the computation is one of :data:`SHAPE_OPS`
and reads nothing but constants, ``Shape`` outputs and other such nodes' outputs. Anything else
(a size computed from the image's values) stays a feature, and the converter refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from medrefine.onnx.fold import Constants, Shapes

#: Operators a moved shape computation may consist of (``Shape`` nodes start it).
SHAPE_OPS = frozenset(
    {
        *("Shape", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast", "Identity"),
        *("Add", "Sub", "Mul", "Div", "Mod", "Floor", "Ceil"),  # e.g. (h * 2, w - w % 4)
    }
)


@dataclass(frozen=True)
class Carrier:
    """A feature that carries the shape of a tensor the head takes the shape of.

    Attributes:
        source: the tensor whose shape the head reads (e.g. the image).
        rank: its rank when shape inference knows it, else None.
        channels: its size along axis 1 when shape inference knows it, else None (the carrier
            has 0 there).
    """

    source: str
    rank: int | None
    channels: int | None


def carrier_name(source: str) -> str:
    """Name of the frozen graph's output that carries the shape of ``source``."""
    return f"{source}__shape"


def _chain(
    graph: onnx.GraphProto, producer: dict[str, int], name: str, constants: Constants
) -> set[int] | None:
    """Indices of the nodes computing ``name`` from ``Shape`` outputs and constants alone (the
    ``Shape`` nodes included), or None when anything else takes part."""
    found, stack = set[int](), [name]
    while stack:
        tensor = stack.pop()
        if tensor in constants:
            continue
        index = producer.get(tensor)
        if index is None:
            return None  # a graph input: its values, not its shape
        if index in found:
            continue
        node = graph.node[index]
        if node.domain not in ("", "ai.onnx") or node.op_type not in SHAPE_OPS:
            return None
        found.add(index)
        if node.op_type != "Shape":
            stack.extend(t for t in node.input if t)
    return found


def _entering(graph: onnx.GraphProto, ids: set[int], constants: Constants) -> list[str]:
    produced = {t for i in ids for t in graph.node[i].output}
    return [
        t
        for i in sorted(ids)
        for t in graph.node[i].input
        if t and t not in produced and t not in constants
    ]


def pull_shape_chains(
    model: onnx.ModelProto, head: list[int], constants: Constants, shapes: Shapes
) -> tuple[list[int], dict[str, Carrier]]:
    """The head's node indices with the shape computations it reads moved in (see the module
    docstring), in graph order, and the size carriers the head then takes, by feature name."""
    graph = model.graph
    producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
    ids = set(head)
    for tensor in _entering(graph, ids, constants):
        chain = _chain(graph, producer, tensor, constants)
        if chain is not None:
            ids |= chain
    readers: dict[str, set[str]] = {}
    for i in ids:
        node = graph.node[i]
        for t in node.input:
            readers.setdefault(t, set()).add(node.op_type)
    carriers = {}
    for tensor in dict.fromkeys(_entering(graph, ids, constants)):
        if readers[tensor] == {"Shape"}:
            shape = shapes.get(tensor)
            channels = shape[1] if shape is not None and len(shape) > 1 else None
            rank = len(shape) if shape is not None else None
            carriers[carrier_name(tensor)] = Carrier(tensor, rank, channels)
    return sorted(ids), carriers


def blocking_node(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    """The node nearest upstream of ``name`` that is not shape arithmetic (:data:`SHAPE_OPS`),
    which kept ``name`` from moving into the head; None when there is none."""
    producer = {t: n for n in graph.node for t in n.output if t}
    queue, seen = [name], set[str]()
    while queue:
        node = producer.get(queue.pop(0))
        if node is None or node.output[0] in seen:
            continue
        seen.add(node.output[0])
        if node.op_type not in SHAPE_OPS:
            return node
        if node.op_type != "Shape":
            queue.extend(t for t in node.input if t)
    return None


def add_carriers(graph: onnx.GraphProto, carriers: dict[str, Carrier]) -> None:
    """Append to ``graph`` the nodes computing each carrier: ``Slice`` of axis 1 to nothing,
    cast to float32 (``(N, 0, *spatial)``)."""
    for name, carrier in carriers.items():
        consts = {"starts": 0, "ends": 0, "axes": 1}
        inputs = [carrier.source]
        for key, value in consts.items():
            tensor = f"{name}__{key}"
            graph.node.append(
                onnx.helper.make_node(
                    "Constant",
                    [],
                    [tensor],
                    value=onnx.helper.make_tensor(tensor, onnx.TensorProto.INT64, [1], [value]),
                )
            )
            inputs.append(tensor)
        graph.node.append(onnx.helper.make_node("Slice", inputs, [f"{name}__empty"]))
        graph.node.append(
            onnx.helper.make_node("Cast", [f"{name}__empty"], [name], to=onnx.TensorProto.FLOAT)
        )

"""Graph neural networks: node and edge importance in one forward and (at most) one backward pass.

:class:`GraphGradCAM` explains a torch_geometric model, for node classification (``index=`` the
node) or graph classification (every graph of a batch at once), and returns PyG's own
:class:`torch_geometric.explain.Explanation`, so PyG's metrics (``groundtruth_metrics``,
``fidelity``) and drawing (``visualize_graph``) apply directly:

- ``node_mask`` (N, 1): graph Grad-CAM (Pope et al., "Explainability Methods for Graph
  Convolutional Neural Networks", CVPR 2019) at a message-passing layer ``l`` with node embeddings
  ``F`` (N, C): channel weights ``alpha_k = (1/|V|) sum_{n in V} dy/dF_nk`` and node importance
  ``ReLU(sum_k alpha_k F_nk)``, each graph's map divided by its maximum. For graph classification
  ``V`` is the graph's nodes and ``y`` its class score, as in the paper. For node classification
  (not in the paper) ``y`` is the target node's logit and ``V`` its receptive field, the nodes
  within as many hops as the model has message-passing layers; nodes outside it get 0, since they
  cannot change the prediction.
- ``edge_mask`` (E,): the positive part of ``dy/dw_e``, the gradient of the same score with
  respect to a weight ``w_e = 1`` on every message along edge ``e`` in every message-passing layer
  (PyG's own ``explain_message`` mechanism, the one its GNNExplainer optimises), divided by its
  maximum. Positive part, as Grad-CAM keeps positive evidence: an edge whose removal would raise
  the score is not part of the explanation.
- ``feature_attribution`` (N, F): gradient x input on the node features, from the same backward.
- ``cam`` (N,): the Grad-CAM values before normalisation; ``target``, ``index``, ``prediction``
  (the logits), ``layer`` and ``path``.

The forward path: when the layer's embeddings go straight into global mean pooling and one linear
layer (verified numerically on the call's own activations, as for CNNs), ``dy_g/dF_nk = W_ck /
N_g``, so ``alpha = W_c / N_g`` and the node map needs no backward pass (``edges=False`` then runs
none at all). Otherwise, or with ``path="autograd"``, the channel weights come from autograd.

torch_geometric is imported inside functions (the ``graph`` extra); registering the method costs
nothing when it is absent.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import types
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError, LayerError
from leanxai.core.hooks import capture, eval_mode
from leanxai.core.layers import ModuleTree, module_tree, resolve_layer
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers.registry import register, set_default

__all__ = [
    "GraphGradCAM",
    "GraphInputs",
    "check_graph",
    "connected_subgraph",
    "edge_weights",
    "message_passing_layers",
    "receptive_field",
]

PATHS = ("auto", "forward", "autograd")

# Relative tolerance of the forward-path check (embeddings -> mean pool -> linear head).
_HEAD_RTOL = 1e-4


def _is_message_passing(module: nn.Module) -> bool:
    return _message_passing_type(type(module))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _message_passing_type(kind: type) -> bool:
    # By class name, so that nothing here imports torch_geometric.
    return any(cls.__name__ == "MessagePassing" for cls in kind.__mro__)


def message_passing_layers(model: nn.Module) -> list[str]:
    """Dotted names of the PyG ``MessagePassing`` modules of ``model``, in registration order."""
    return [name for name, module in model.named_modules() if name and _is_message_passing(module)]


@dataclass(frozen=True)
class GraphInputs:
    """A checked graph: ``x`` (N, F), ``edge_index`` (2, E) int64, ``batch`` (N,) or ``None``."""

    x: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor | None
    num_graphs: int
    extra: dict[str, torch.Tensor]

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def batch_vector(self) -> torch.Tensor:
        if self.batch is not None:
            return self.batch
        return torch.zeros(self.num_nodes, dtype=torch.long, device=self.x.device)


def check_graph(data: object, name: str = "data") -> GraphInputs:
    """Check a PyG ``Data``/``Batch`` (anything with ``x`` and ``edge_index``).

    Raises
    ------
    InputTypeError
        When ``data`` has no ``x`` and ``edge_index`` tensors.
    InputError
        An empty graph, ``edge_index`` of the wrong shape or dtype or naming a node outside the
        graph, non-finite features, a ``batch`` vector of the wrong length.
    """
    x = getattr(data, "x", None)
    edge_index = getattr(data, "edge_index", None)
    if not isinstance(x, torch.Tensor) or not isinstance(edge_index, torch.Tensor):
        raise InputTypeError(
            f"{name} must be a torch_geometric Data or Batch with x and edge_index tensors, "
            f"got {type(data).__name__}"
        )
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise InputError(f"{name}.x must have shape (N, F), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty graph (0 nodes)")
    if not x.dtype.is_floating_point:
        raise InputError(f"{name}.x must be a floating tensor, got dtype {x.dtype}")
    # One reduction instead of isfinite's four operations: the minimum and maximum are both
    # finite exactly when every value is (NaN propagates into both, -inf/inf into one).
    if x.numel() and not all(math.isfinite(end) for end in torch.aminmax(x)):
        raise InputError(f"{name}.x contains NaN or infinite values")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise InputError(f"{name}.edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool:
        raise InputError(
            f"{name}.edge_index must be an integer tensor, got dtype {edge_index.dtype}"
        )
    n = int(x.shape[0])
    if edge_index.numel():
        low, high = (int(end) for end in torch.aminmax(edge_index))
        if low < 0 or high >= n:
            bad = low if low < 0 else high
            raise InputError(
                f"{name}.edge_index names node {bad}, outside the graph of {n} nodes (0..{n - 1})"
            )
    batch = getattr(data, "batch", None)
    num_graphs = 1
    if isinstance(batch, torch.Tensor):
        if batch.shape != (n,):
            raise InputError(f"{name}.batch must have shape ({n},), got {tuple(batch.shape)}")
        num_graphs = int(batch.max()) + 1
    else:
        batch = None
    extra = {
        key: value
        for key in ("edge_weight", "edge_attr")
        if isinstance(value := getattr(data, key, None), torch.Tensor)
    }
    return GraphInputs(x, edge_index.long(), batch, num_graphs, extra)


def receptive_field(
    index: int, edge_index: torch.Tensor, hops: int, num_nodes: int
) -> torch.Tensor:
    """(N,) bool: the nodes from which messages reach node ``index`` within ``hops`` steps."""
    reached = torch.zeros(num_nodes, dtype=torch.bool, device=edge_index.device)
    reached[index] = True
    source, target = edge_index
    for _ in range(hops):
        grown = reached.clone()
        grown[source[reached[target]]] = True
        if bool((grown == reached).all()):
            break
        reached = grown
    return reached


_EXPLAIN_STATE = (
    "_explain",
    "_edge_mask",
    "_loop_mask",
    "_apply_sigmoid",
    "propagate",
    "_user_args",
)


# What PyG's ``explain = True`` setter leaves on a layer (its ``propagate`` function and argument
# names), per layer, so that later calls skip the setter's signature inspection (~0.4 ms a layer).
_EXPLAIN_ON: weakref.WeakKeyDictionary[nn.Module, tuple[Any, list[str]]] = (
    weakref.WeakKeyDictionary()
)


def _switch_explain_on(module: nn.Module) -> None:
    cached = _EXPLAIN_ON.get(module)
    if cached is not None and module.__dict__.get("_explain") is None:
        function, user_args = cached
        module.__dict__.update(
            _explain=True, propagate=types.MethodType(function, module), _user_args=list(user_args)
        )
        return
    module.explain = True  # type: ignore[assignment]
    propagate = module.__dict__.get("propagate")
    if isinstance(propagate, types.MethodType) and propagate.__self__ is module:
        _EXPLAIN_ON[module] = (propagate.__func__, list(module.__dict__["_user_args"]))


@contextlib.contextmanager
def edge_weights(
    model: nn.Module,
    weights: torch.Tensor,
    edge_index: torch.Tensor,
    modules: list[tuple[str, nn.Module]] | None = None,
) -> Iterator[list[str]]:
    """Multiply every message along edge ``e`` by ``weights[e]`` in every message-passing layer.

    PyG's own mechanism (``MessagePassing.explain_message``, used by its GNNExplainer and
    CaptumExplainer); self-loops that a layer adds get weight 1. Each layer's explain state (the
    attributes PyG's ``explain`` setter changes, ``propagate`` included) is put back exactly as it
    was when the block ends, also after an error. Yields the names of the layers weighted.
    ``modules``: the model's ``(name, module)`` pairs when the caller has them already (at least
    its message-passing layers; :class:`GraphGradCAM` passes just those).
    """
    missing = object()
    loop_mask = edge_index[0] != edge_index[1]
    layers = [
        (name, module)
        for name, module in (modules if modules is not None else model.named_modules())
        if _is_message_passing(module) and module.explain is not False
    ]
    # Each layer's state is saved before it is changed, so a failure halfway restores exactly the
    # layers changed so far.
    saved: list[tuple[nn.Module, dict[str, Any]]] = []
    try:
        for _, module in layers:
            saved.append(
                (module, {key: module.__dict__.get(key, missing) for key in _EXPLAIN_STATE})
            )
            _switch_explain_on(module)
            # Straight into the instance dict: after PyG's GNNExplainer has run, ``_edge_mask``
            # is a registered (None) parameter, which refuses a plain tensor; the instance
            # attribute is what ``explain_message`` reads, and the registration stays untouched.
            module.__dict__.update(_edge_mask=weights, _loop_mask=loop_mask, _apply_sigmoid=False)
        yield [name for name, _ in layers]
    finally:
        for module, state in reversed(saved):
            for key, value in state.items():
                if value is missing:
                    module.__dict__.pop(key, None)
                else:
                    module.__dict__[key] = value


@functools.lru_cache(maxsize=64)
def _forward_parameters(forward: Any) -> frozenset[str] | None:
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


def _keyword_arguments(model: nn.Module, graph: GraphInputs) -> dict[str, torch.Tensor]:
    """``batch``, ``edge_weight``, ``edge_attr``: those the data has and the forward takes."""
    accepted = _forward_parameters(type(model).forward)
    kwargs: dict[str, torch.Tensor] = {}
    if accepted is None or "batch" in accepted:
        if graph.batch is not None or accepted is not None:
            kwargs["batch"] = graph.batch_vector()
    for key, value in graph.extra.items():
        if accepted is None or key in accepted:
            kwargs[key] = value
    return kwargs


def _normalize(values: torch.Tensor, groups: torch.Tensor | None, count: int) -> torch.Tensor:
    """Divide each group's values by the group's maximum (an all-zero group stays zero).

    ``groups`` may be ``None`` when ``count`` is 1.
    """
    tiny = torch.finfo(values.dtype).tiny
    if count == 1 or groups is None:
        # One group: max(0, max(values)) clamped to ``tiny`` is max(values) clamped to ``tiny``
        # (NaN propagates in both), so this divides by the very number the scatter below gives.
        return values / values.max().clamp_min(tiny) if values.numel() else values.clone()
    peak = torch.zeros(count, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, groups, values, reduce="amax", include_self=True)
    return values / peak.clamp_min(tiny)[groups]


def _group_sizes(batch: torch.Tensor, count: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) nodes per graph (at least 1), in ``dtype``."""
    return torch.bincount(batch, minlength=count).clamp_min(1).to(dtype)


def _mean_pool(
    values: torch.Tensor, batch: torch.Tensor, count: int, sizes: torch.Tensor | None = None
) -> torch.Tensor:
    sums = values.new_zeros(count, values.shape[1]).index_add_(0, batch, values)
    if sizes is None:
        sizes = _group_sizes(batch, count, values.dtype)
    return sums / sizes.unsqueeze(1)


class _StructureFacts:
    """What the explainer learned about its model's module tree; valid while the tree is equal.

    Only structure is kept (layer names, the message-passing modules, the head module), never
    anything computed from parameter values or from a call's tensors: the forward path's check
    (mean pooling into the head) still runs on every call's own activations.
    """

    __slots__ = ("head", "head_module", "layer", "layer_argument", "layers", "tree", "weighted")

    def __init__(self, model: nn.Module, tree: ModuleTree) -> None:
        self.tree = tree
        named = list(model.named_modules())
        # Every message-passing module, the model itself included, gets the edge weights.
        self.weighted = [(name, module) for name, module in named if _is_message_passing(module)]
        self.layers = [name for name, _ in self.weighted if name]
        # The last registered Linear: the head of the forward path.
        self.head: str | None = None
        self.head_module: nn.Module | None = None
        for name, module in reversed(named):
            if isinstance(module, nn.Linear):
                self.head, self.head_module = name, module
                break
        self.layer: str | None = None  # resolved for ``layer_argument``
        self.layer_argument: str | nn.Module | None = None


@register(
    "gradcam",
    families="graph",
    output="node/edge scores",
    backward="if needed",
    aliases=("graph_gradcam", "grad_cam"),
    summary="graph Grad-CAM (Pope et al. 2019) nodes + edge-weight gradient edges, one pass",
)
class GraphGradCAM:
    """Graph Grad-CAM node importance and edge-weight gradient edge importance, in one pass.

    Parameters
    ----------
    model
        A torch_geometric model called as ``model(x, edge_index[, batch=...])`` (``batch``,
        ``edge_weight`` and ``edge_attr`` are passed when the data has them and the forward
        takes them). It returns ``(N, K)`` logits for node classification or ``(B, K)`` for
        graph classification.
    layer
        Dotted name of the message-passing layer whose node embeddings Grad-CAM weighs; default:
        the last registered ``MessagePassing`` module.
    path
        ``"auto"`` (the forward path when verified, else autograd), ``"forward"`` (refuse when
        the structure does not allow it) or ``"autograd"``.
    edges
        Compute ``edge_mask`` and ``feature_attribution`` (one backward pass). With ``False`` and
        the forward path, no backward pass runs.

    Notes
    -----
    Follows Pope et al. (2019), eq. for Grad-CAM, with the node average over the graph. Deviation:
    for node classification the average runs over the target node's receptive field and nodes
    outside it are set to 0. The model is put in eval mode for the call and left as it was.
    """

    name = "gradcam"

    def __init__(
        self, model: nn.Module, layer: str | None = None, path: str = "auto", edges: bool = True
    ) -> None:
        validate.instance("model", model, nn.Module)
        self.model = model
        self.layer = layer
        self.path = validate.choice("path", path, PATHS)
        self.edges = bool(edges)
        self._facts: _StructureFacts | None = None

    def __repr__(self) -> str:
        return (
            f"GraphGradCAM({type(self.model).__name__}, layer={self.layer!r}, path={self.path!r})"
        )

    def _structure_facts(self, tree: ModuleTree) -> _StructureFacts:
        """The cached facts when the module tree is the one they were learned on, else fresh ones.

        The tree's first module is the model itself, so a new model (``explainer.model = ...``)
        also starts afresh; so does any submodule added, removed, replaced or renamed.
        """
        facts = self._facts
        if facts is None or facts.tree != tree:
            facts = self._facts = _StructureFacts(self.model, tree)
        return facts

    def _layer(self, facts: _StructureFacts) -> tuple[str, int]:
        layers = facts.layers
        if not layers:
            raise InputError(
                f"model {type(self.model).__name__} has no torch_geometric message-passing layers; "
                "graph methods need a GNN (GCNConv, GINConv, GATConv...)"
            )
        if self.layer is None:
            return layers[-1], len(layers)
        if facts.layer is None or facts.layer_argument is not self.layer:
            name = resolve_layer(self.model, self.layer)
            if name not in layers:
                raise LayerError(
                    f"layer {name!r} is not a message-passing layer; choose one of "
                    f"{', '.join(layers)}"
                )
            facts.layer, facts.layer_argument = name, self.layer
        return facts.layer, len(layers)

    def explain(self, data: Any, target: Target = None, *, index: Index = None) -> Any:
        """Explain node ``index`` (node classification) or every graph of ``data``.

        Parameters
        ----------
        data
            A PyG ``Data`` or ``Batch``.
        target
            ``None`` for the predicted class; an int, or one class per graph (per node).
        index
            The node to explain for a node classifier, or a sequence of nodes (one forward pass,
            one batched backward pass for all); ``None`` for graph classification.

        Returns
        -------
        torch_geometric.explain.Explanation, or a list of them for a sequence of nodes
            ``node_mask`` (N, 1), ``edge_mask`` (E,) (unless ``edges=False``),
            ``feature_attribution`` (N, F), ``cam`` (N,), ``target``, ``index``, ``prediction``,
            ``layer``, ``path``, ``method``.
        """
        graph = check_graph(data)
        tree = module_tree(self.model)  # one walk of the tree per call, to validate the cache
        facts = self._structure_facts(tree)
        layer, hops = self._layer(facts)
        indices = _indices(index, graph.num_nodes)
        head = None
        if indices is None and self.path != "autograd":
            head = facts.head
        kwargs = _keyword_arguments(self.model, graph)
        x = graph.x.detach().clone().requires_grad_(self.edges)
        weights = torch.ones(
            graph.num_edges, dtype=x.dtype, device=x.device, requires_grad=self.edges
        )
        watched = [layer] + ([head] if head is not None else [])
        grad_needed = self.edges or head is None
        with contextlib.ExitStack() as stack:
            stack.enter_context(eval_mode(self.model, modules=tree[0]))
            if self.edges:
                stack.enter_context(
                    edge_weights(self.model, weights, graph.edge_index, facts.weighted)
                )
            record = stack.enter_context(capture(self.model, [], inputs_of=watched))
            # Without edges, a graph classifier may need no gradient at all (the forward path);
            # should the head check fail, the call is run again on the autograd path.
            with torch.set_grad_enabled(grad_needed):
                logits = logits_of(self.model(x, graph.edge_index, **kwargs))
            calls = record.calls.get(layer, 0)
            activation = record.output_of.get(layer)
            head_input = record.inputs.get(head) if head is not None else None
            head_output = record.output_of.get(head) if head is not None else None
        if calls != 1 or not isinstance(activation, torch.Tensor) or activation.dim() != 2:
            raise LayerError(
                f"layer {layer!r} must run once and return (N, C) node embeddings; it ran "
                f"{calls} times"
                + ("" if activation is None else f", shape {tuple(activation.shape)}")
            )
        if activation.shape[0] != graph.num_nodes:
            raise LayerError(
                f"layer {layer!r} returns {activation.shape[0]} rows for a graph of "
                f"{graph.num_nodes} nodes"
            )
        common = {"x": graph.x, "edge_index": graph.edge_index, "layer": layer}
        if graph.batch is not None:
            common["batch"] = graph.batch
        if indices is not None:
            results = self._nodes(graph, indices, hops, logits, activation, weights, x, target)
            for result in results:
                result.update(common)
            explanations = [_explanation(result) for result in results]
            return explanations[0] if isinstance(index, int) else explanations

        if logits.shape[0] != graph.num_graphs:
            raise InputError(
                f"the model returns {logits.shape[0]} outputs for {graph.num_graphs} graph(s) "
                f"of {graph.num_nodes} nodes: a node classifier needs index= (the node)"
            )
        prediction = logits.detach()
        targets = resolve_target(target, prediction)
        count = graph.num_graphs
        if count == 1:  # the same one-hot gradient as the gather below, in fewer operations
            score = logits[0, int(targets[0])]
        else:
            score = logits.gather(1, targets.unsqueeze(1)).sum()
        groups = graph.batch_vector()
        forward_weights = None
        if self.path != "autograd":
            forward_weights = _forward_weights(
                activation,
                head_input,
                head_output,
                logits,
                groups,
                count,
                targets,
                facts.head_module if head is not None else None,
            )
            if forward_weights is None and self.path == "forward":
                raise InputError(
                    f"path='forward' needs layer {layer!r} to feed global mean pooling and one "
                    "linear layer directly; use path='auto' or 'autograd'"
                )
            if forward_weights is None and not grad_needed:
                again = GraphGradCAM(self.model, self.layer, "autograd", self.edges)
                again._facts = facts  # the same tree: still valid
                return again.explain(data, target, index=index)
        path = "forward" if forward_weights is not None else "autograd"
        inputs = ([activation] if path == "autograd" else []) + ([weights, x] if self.edges else [])
        grads = list(torch.autograd.grad(score, inputs, allow_unused=True)) if inputs else []
        with torch.no_grad():  # nothing below is recorded: ``activation`` needs no detach
            if path == "autograd":
                alpha = _mean_pool(_or_zeros(grads.pop(0), activation), groups, count)  # (B, C)
            else:
                alpha = forward_weights  # type: ignore[assignment]  # (B, C)
            # One graph: its row broadcasts, the same products as indexing it for every node.
            cam = torch.relu((activation * (alpha if count == 1 else alpha[groups])).sum(dim=1))
            result = {
                **common,
                "node_mask": _normalize(cam, groups, count).unsqueeze(1),  # (N, 1)
                "cam": cam,
                "target": targets,
                "index": None,
                "prediction": prediction,
                "path": path,
                "method": self.name,
            }
            if self.edges:
                edge_grad, x_grad = (
                    _or_zeros(g, t) for g, t in zip(grads, (weights, x), strict=True)
                )
                edge_groups = groups[graph.edge_index[0]] if count > 1 else None  # (E,)
                result["edge_mask"] = _normalize(edge_grad.abs(), edge_groups, count)
                result["feature_attribution"] = x_grad * graph.x
        return _explanation(result)

    def _nodes(
        self,
        graph: GraphInputs,
        indices: list[int],
        hops: int,
        logits: torch.Tensor,
        activation: torch.Tensor,
        weights: torch.Tensor,
        x: torch.Tensor,
        target: Target,
    ) -> list[dict[str, Any]]:
        """One result per node of ``indices``, from one batched backward pass."""
        if logits.shape[0] != graph.num_nodes:
            raise InputError(
                f"index names a node, but the model returns {logits.shape[0]} outputs for "
                f"{graph.num_nodes} nodes (graph classification: leave index None)"
            )
        rows = torch.tensor(indices, device=logits.device)
        targets = resolve_target(target, logits[rows].detach())  # (K,)
        scores = logits[rows, targets]  # (K,)
        inputs = [activation] + ([weights, x] if self.edges else [])
        grads = _batched_grad(scores, inputs)  # each (K, *input.shape)
        results = []
        with torch.no_grad():
            embeddings = activation.detach()
            for k, node in enumerate(indices):
                field = receptive_field(node, graph.edge_index, hops, graph.num_nodes)
                alpha = grads[0][k][field].sum(dim=0) / field.sum()  # (C,)
                cam = torch.relu(embeddings @ alpha) * field  # (N,)
                result: dict[str, Any] = {
                    "node_mask": (cam / cam.max().clamp_min(torch.finfo(cam.dtype).tiny))[:, None],
                    "cam": cam,
                    "target": targets[k : k + 1],
                    "index": node,
                    "prediction": logits.detach(),
                    "path": "autograd",
                    "method": self.name,
                }
                if self.edges:
                    edge_grad = grads[1][k].abs()
                    result["edge_mask"] = edge_grad / edge_grad.max().clamp_min(
                        torch.finfo(edge_grad.dtype).tiny
                    )
                    result["feature_attribution"] = grads[2][k] * graph.x
                results.append(result)
        return results


Index = int | Sequence[int] | torch.Tensor | None


def _indices(index: Index, num_nodes: int) -> list[int] | None:
    """``index`` as a list of node ids, each checked against the graph; ``None`` stays ``None``."""
    if index is None:
        return None
    if isinstance(index, torch.Tensor):
        if index.dtype.is_floating_point or index.dtype == torch.bool or index.dim() > 1:
            raise InputError(f"index must be node ids (ints), got a {index.dtype} tensor")
        values: list[Any] = index.reshape(-1).tolist()
    elif isinstance(index, Sequence) and not isinstance(index, str):
        values = list(index)
    else:
        values = [index]
    if not values:
        raise InputError("index is empty; name at least one node")
    nodes = [validate.non_negative_int("index", value) for value in values]
    for node in nodes:
        if node >= num_nodes:
            raise InputError(
                f"index {node} is outside the graph of {num_nodes} nodes (0..{num_nodes - 1})"
            )
    return nodes


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    # allow_unused: an input no path reaches (a layer that never weights messages) has gradient 0.
    return torch.zeros_like(like) if grad is None else grad


def _batched_grad(scores: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """d scores[k] / d inputs for every k: (K, *input.shape) each, from one batched backward."""
    count = scores.shape[0]
    if count == 1:
        grads = torch.autograd.grad(scores[0], inputs, allow_unused=True)
        return [_or_zeros(g, t)[None] for g, t in zip(grads, inputs, strict=True)]
    eye = torch.eye(count, dtype=scores.dtype, device=scores.device)
    try:
        grads = torch.autograd.grad(
            scores,
            inputs,
            grad_outputs=eye,
            is_grads_batched=True,
            allow_unused=True,
            retain_graph=True,
        )
        return [
            torch.zeros((count, *t.shape), dtype=t.dtype, device=t.device) if g is None else g
            for g, t in zip(grads, inputs, strict=True)
        ]
    except RuntimeError:  # an operation without a batching rule: one backward per node
        rows = [
            torch.autograd.grad(scores[k], inputs, allow_unused=True, retain_graph=True)
            for k in range(count)
        ]
        return [torch.stack([_or_zeros(row[j], t) for row in rows]) for j, t in enumerate(inputs)]


def _explanation(fields: dict[str, Any]) -> Any:
    """A PyG ``Explanation`` holding ``fields`` (``None`` values left out, as PyG does)."""
    from torch_geometric.explain import Explanation

    values = {
        key: value.detach() if isinstance(value, torch.Tensor) and value.requires_grad else value
        for key, value in fields.items()
        if value is not None
    }
    explanation = Explanation()
    # PyG's constructor sets one field at a time, each through Data.__setattr__, a property lookup
    # and the storage's attribute-cache invalidation (about 30 us for our dozen fields, a tenth of
    # the fixed cost of a call on a small graph); on a new, empty store each of those ends in
    # ``_mapping[key] = value``. So the store is filled at once when it has exactly that layout,
    # else field by field as the constructor does (tests check that both give the same object).
    mapping = getattr(explanation.__dict__.get("_store"), "__dict__", {}).get("_mapping")
    if type(mapping) is dict and not mapping and not any(key[:1] == "_" for key in values):
        mapping.update(values)
        return explanation
    for key, value in values.items():
        setattr(explanation, key, value)
    return explanation


def _forward_weights(
    activation: torch.Tensor,
    head_input: torch.Tensor | None,
    head_output: torch.Tensor | None,
    logits: torch.Tensor,
    groups: torch.Tensor,
    count: int,
    targets: torch.Tensor,
    head: nn.Module | None,
) -> torch.Tensor | None:
    """``W_c / N_g`` (B, C) when ``logits = head(mean_pool(activation))`` holds on this call.

    Checked numerically on the call's own tensors: the head's input is the mean of each graph's
    embeddings and the model's output is the head's output; else ``None`` (autograd path).
    """
    if head is None or head_input is None or head_output is None:
        return None
    if not isinstance(head, nn.Linear) or head_input.shape != (count, activation.shape[1]):
        return None
    with torch.no_grad():  # nothing here is recorded, so nothing needs a detach
        sizes = _group_sizes(groups, count, activation.dtype)  # (B,)
        pooled = _mean_pool(activation, groups, count, sizes)  # (B, C)
        scale = pooled.abs().max().clamp_min(1e-12)
        if float((pooled - head_input).abs().max()) > _HEAD_RTOL * float(scale):
            return None
        if head_output.shape != logits.shape or not torch.equal(head_output, logits):
            return None
        return head.weight[targets].to(activation.dtype) / sizes.unsqueeze(1)


def connected_subgraph(
    edge_mask: torch.Tensor,
    edge_index: torch.Tensor,
    top: int,
    *,
    node: int | None = None,
    num_nodes: int | None = None,
) -> torch.Tensor:
    """Keep the ``top`` highest-scoring edges, then only one connected piece of them.

    The piece is the connected component (edges taken as undirected) that contains ``node`` (the
    explained node), or for graph classification (``node=None``) the one with the most kept
    edges (the lowest node id among ties). Edges of score 0 are never kept, as in every
    threshold; an edge ranks by score, then by position. A pure tensor function.

    Returns
    -------
    torch.Tensor
        ``edge_mask`` with every edge not kept set to 0 (kept scores unchanged); all zero when no
        kept edge touches ``node``.
    """
    edge_mask = validate.tensor("edge_mask", edge_mask, dims=1, floating=True)
    edge_index = validate.tensor("edge_index", edge_index, dims=2)
    if edge_index.shape != (2, edge_mask.shape[0]):
        raise InputError(
            f"edge_index must have shape (2, {edge_mask.shape[0]}), got {tuple(edge_index.shape)}"
        )
    top = validate.positive_int("top", top)
    n = int(edge_index.max()) + 1 if num_nodes is None and edge_index.numel() else num_nodes or 0
    if node is not None:
        node = validate.non_negative_int("node", node)
        n = max(n, node + 1)
    order = torch.sort(edge_mask, descending=True, stable=True).indices[:top]
    kept = torch.zeros_like(edge_mask, dtype=torch.bool)
    kept[order] = True
    kept &= edge_mask > 0
    if not bool(kept.any()):
        return torch.zeros_like(edge_mask)
    source, target = edge_index[:, kept]
    label = torch.arange(n, device=edge_index.device)
    # Connected components by min-label propagation over the kept edges, both directions.
    for _ in range(n):
        smaller = torch.minimum(label[source], label[target])
        new = label.scatter_reduce(0, source, smaller, reduce="amin")
        new = new.scatter_reduce(0, target, smaller, reduce="amin")
        if torch.equal(new, label):
            break
        label = new
    edge_label = label[edge_index[0]]
    if node is not None:
        chosen = label[node]
    else:
        sizes = torch.bincount(edge_label[kept], minlength=n)
        chosen = sizes.argmax()
    keep = kept & (edge_label == chosen)
    return torch.where(keep, edge_mask, torch.zeros_like(edge_mask))


set_default("graph", "gradcam")

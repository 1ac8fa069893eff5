"""Graph Grad-CAM and edge-weight gradients (explainers/graph.py) against literal references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch, Data
from torch_geometric.explain import Explanation
from torch_geometric.nn import GCNConv, global_mean_pool

import leanxai
from leanxai.core.errors import InputError, InputTypeError, LeanXAIError
from leanxai.core.families import detect
from leanxai.explainers import registry
from leanxai.explainers.graph import (
    GraphGradCAM,
    connected_subgraph,
    receptive_field,
)

# -- tiny float64 models ---------------------------------------------------------------------------


class NodeGCN2(nn.Module):
    """x -> GCNConv -> ReLU -> GCNConv -> ReLU -> Linear, per node."""

    def __init__(self, fan_in: int = 3, hidden: int = 5, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = GCNConv(fan_in, hidden)
        self.conv2 = GCNConv(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x, edge_index))
        return self.head(torch.relu(self.conv2(h, edge_index)))


class GraphGCN2(nn.Module):
    """Two GCNConv, the second's embeddings mean-pooled straight into a linear head."""

    def __init__(self, fan_in: int = 3, hidden: int = 5, classes: int = 2) -> None:
        super().__init__()
        self.conv1 = GCNConv(fan_in, hidden)
        self.conv2 = GCNConv(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = torch.relu(self.conv1(x, edge_index))
        return self.head(global_mean_pool(self.conv2(h, edge_index), batch))


class GraphGCN2Relu(GraphGCN2):
    """A ReLU between the layer and the pooling: no forward path at conv2."""

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = torch.relu(self.conv1(x, edge_index))
        return self.head(global_mean_pool(torch.tanh(self.conv2(h, edge_index)), batch))


def _seeded(cls: type[nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = cls().double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-1, 1)  # non-trivial biases too
    return model


def _graph(seed: int = 0, nodes: int = 12, edges: int = 18) -> Data:
    generator = torch.Generator().manual_seed(seed)
    pairs = set()
    while len(pairs) < edges:
        a, b = torch.randint(0, nodes, (2,), generator=generator).tolist()
        if a != b:
            pairs.add((min(a, b), max(a, b)))
    undirected = [(a, b) for a, b in sorted(pairs)] + [(b, a) for a, b in sorted(pairs)]
    edge_index = torch.tensor(undirected).t().contiguous()
    x = torch.rand(nodes, 3, generator=generator, dtype=torch.float64) * 2 - 1
    return Data(x=x, edge_index=edge_index)


# -- literal references ----------------------------------------------------------------------------


def _gcn_layer(
    conv: GCNConv, h: torch.Tensor, edge_index: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """Kipf & Welling's layer written out: D^-1/2 (A + I) D^-1/2 H W + b, message j -> i of edge
    e scaled by w_e (PyG's explain mask multiplies the normalised message)."""
    n = h.shape[0]
    degree = torch.ones(n, dtype=h.dtype)  # the self-loop
    degree = degree.index_add(0, edge_index[1], torch.ones(edge_index.shape[1], dtype=h.dtype))
    hw = h @ conv.lin.weight.t()  # (N, C)
    out = hw / degree[:, None]  # self-loops: 1/sqrt(d_i d_i)
    for e in range(edge_index.shape[1]):
        j, i = int(edge_index[0, e]), int(edge_index[1, e])
        coefficient = w[e] / torch.sqrt(degree[i] * degree[j])
        out = out.index_add(0, torch.tensor([i]), (coefficient * hw[j])[None])
    return out + conv.bias


def _reference_node(model: NodeGCN2, data: Data, index: int, target: int):
    """Graph Grad-CAM at conv2 for node ``index`` (receptive field: 2 hops), literally."""
    x, edge_index = data.x, data.edge_index
    w = torch.ones(edge_index.shape[1], dtype=torch.float64, requires_grad=True)
    h1 = torch.relu(_gcn_layer(model.conv1, x, edge_index, w))
    h2 = _gcn_layer(model.conv2, h1, edge_index, w)  # F: the layer's node embeddings
    # dy/dF written out: only the target node's row, through the ReLU, times the head row.
    grad = torch.zeros_like(h2)
    grad[index] = (h2[index] > 0).double() * model.head.weight[target]
    logits = model.head(torch.relu(h2))
    (edge_grad,) = torch.autograd.grad(logits[index, target], w)
    field = torch.zeros(x.shape[0], dtype=torch.bool)
    field[index] = True
    for _ in range(2):
        reached = field.clone()
        for e in range(edge_index.shape[1]):
            if field[edge_index[1, e]]:
                reached[edge_index[0, e]] = True
        field = reached
    alpha = grad[field].sum(dim=0) / field.sum()
    cam = torch.relu((h2 * alpha).sum(dim=1)) * field
    return cam.detach(), edge_grad.abs().detach()


# -- the literal reference -------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 3, 7])
def test_node_gradcam_matches_the_literal_float64_reference(index):
    model, data = _seeded(NodeGCN2), _graph()
    explanation = GraphGradCAM(model, layer="conv2").explain(data, index=index)
    target = int(model(data.x, data.edge_index)[index].argmax())
    cam, edge_grad = _reference_node(model, data, index, target)
    assert isinstance(explanation, Explanation)
    assert explanation.path == "autograd" and int(explanation.target[0]) == target
    assert torch.allclose(explanation.cam, cam, atol=1e-5, rtol=0)
    assert cam.max() > 0
    torch.testing.assert_close(explanation.node_mask[:, 0], cam / cam.max(), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        explanation.edge_mask, edge_grad / edge_grad.max(), atol=1e-5, rtol=0
    )
    assert explanation.node_mask.shape == (data.num_nodes, 1)
    explanation.validate_masks()


def test_feature_attribution_is_gradient_times_input():
    model, data = _seeded(NodeGCN2), _graph(1)
    explanation = GraphGradCAM(model).explain(data, index=2)
    x = data.x.clone().requires_grad_(True)
    logits = model(x, data.edge_index)
    (grad,) = torch.autograd.grad(logits[2, int(explanation.target[0])], x)
    torch.testing.assert_close(explanation.feature_attribution, grad * data.x)


def test_forward_path_equals_autograd_on_a_mean_pooled_graph_classifier():
    model = _seeded(GraphGCN2)
    batch = Batch.from_data_list([_graph(s, nodes=8 + s, edges=10 + s) for s in range(4)])
    forward = GraphGradCAM(model).explain(batch)
    autograd = GraphGradCAM(model, path="autograd").explain(batch)
    no_edges = GraphGradCAM(model, edges=False, path="forward").explain(batch)
    assert forward.path == "forward" and no_edges.path == "forward"
    assert autograd.path == "autograd"
    assert forward.cam.abs().max() > 0
    torch.testing.assert_close(forward.cam, autograd.cam, atol=1e-4, rtol=0)
    torch.testing.assert_close(forward.node_mask, autograd.node_mask, atol=1e-4, rtol=0)
    torch.testing.assert_close(no_edges.node_mask, forward.node_mask, atol=1e-4, rtol=0)
    torch.testing.assert_close(forward.edge_mask, autograd.edge_mask)
    assert "edge_mask" not in no_edges
    # Each graph's maps are its own: one graph alone gives the same values.
    alone = GraphGradCAM(model).explain(_graph(2, nodes=10, edges=12))
    torch.testing.assert_close(alone.node_mask, forward.node_mask[batch.batch == 2])
    torch.testing.assert_close(
        alone.edge_mask, forward.edge_mask[batch.batch[batch.edge_index[0]] == 2]
    )


def test_forward_path_refused_when_the_layer_does_not_feed_the_pooling():
    model = _seeded(GraphGCN2Relu)
    data = _graph()
    assert GraphGradCAM(model).explain(data).path == "autograd"
    assert GraphGradCAM(model, edges=False).explain(data).path == "autograd"
    with pytest.raises(InputError, match="path='forward' needs"):
        GraphGradCAM(model, path="forward").explain(data)


def test_many_nodes_in_one_pass_equal_one_at_a_time():
    model, data = _seeded(NodeGCN2), _graph(2)
    explainer = GraphGradCAM(model)
    together = explainer.explain(data, index=[1, 4, 9])
    assert isinstance(together, list) and len(together) == 3
    for node, explanation in zip([1, 4, 9], together, strict=True):
        alone = explainer.explain(data, index=node)
        assert explanation.index == node
        torch.testing.assert_close(explanation.node_mask, alone.node_mask)
        torch.testing.assert_close(explanation.edge_mask, alone.edge_mask)


def test_receptive_field_is_the_k_hop_neighbourhood():
    from torch_geometric.utils import k_hop_subgraph

    data = _graph(3)
    for hops in (1, 2, 3):
        subset = k_hop_subgraph(5, hops, data.edge_index, num_nodes=data.num_nodes)[0]
        field = receptive_field(5, data.edge_index, hops, data.num_nodes)
        assert set(field.nonzero()[:, 0].tolist()) == set(subset.tolist())


# -- the one call, the registry, detection ---------------------------------------------------------


def test_leanxai_explain_detects_the_graph_family_and_passes_index():
    model, data = _seeded(NodeGCN2), _graph()
    assert detect(model, data) == "graph"
    assert registry.default_method("graph") == "gradcam"
    assert registry.get("gradcam", "graph").output == "node/edge scores"
    explanation = leanxai.explain(model, data, index=3)
    assert isinstance(explanation, Explanation)
    assert explanation.family == "graph" and explanation.index == 3
    assert explanation.edge_mask.shape == (data.num_edges,)
    graph_model = _seeded(GraphGCN2)
    assert leanxai.explain(graph_model, data).node_mask.shape == (data.num_nodes, 1)


def test_pyg_metrics_apply_directly():
    pytest.importorskip("torchmetrics")
    from torch_geometric.explain.metric import groundtruth_metrics

    model, data = _seeded(NodeGCN2), _graph()
    explanation = leanxai.explain(model, data, index=0)
    truth = (explanation.edge_mask > 0.5).float()
    assert groundtruth_metrics(explanation.edge_mask, truth, "auroc") == pytest.approx(1.0)


# -- model state -----------------------------------------------------------------------------------

_EXPLAIN_STATE = ("_explain", "_edge_mask", "_loop_mask", "_apply_sigmoid", "propagate")


def _explain_state(model: nn.Module) -> list[dict[str, object]]:
    return [
        {k: module.__dict__.get(k, "absent") for k in _EXPLAIN_STATE}
        for module in model.modules()
        if isinstance(module, GCNConv)
    ]


def test_model_unchanged_after_success(state_guard):
    model, data = _seeded(NodeGCN2), _graph()
    model.train()
    before = _explain_state(model)
    check = state_guard(model)
    GraphGradCAM(model).explain(data, index=1)
    GraphGradCAM(model).explain(data, index=[1, 2])
    check()
    assert _explain_state(model) == before
    graph_model = _seeded(GraphGCN2)
    check = state_guard(graph_model)
    GraphGradCAM(graph_model, edges=False).explain(data)
    GraphGradCAM(graph_model).explain(data)
    check()


class Exploding(NodeGCN2):
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        torch.relu(self.conv1(x, edge_index))
        raise RuntimeError("boom")


def test_model_unchanged_after_an_error(state_guard):
    model, data = _seeded(Exploding), _graph()
    before = _explain_state(model)
    check = state_guard(model)
    with pytest.raises(RuntimeError, match="boom"):
        GraphGradCAM(model).explain(data, index=1)
    check()
    assert _explain_state(model) == before
    good = _seeded(NodeGCN2)
    check = state_guard(good)
    with pytest.raises(InputError):
        GraphGradCAM(good).explain(data, index=99)
    check()


def test_works_after_pyg_gnnexplainer_ran_on_the_model():
    from torch_geometric.explain import Explainer, GNNExplainer

    model, data = _seeded(NodeGCN2), _graph()
    explainer = Explainer(
        model,
        GNNExplainer(epochs=2),
        explanation_type="model",
        edge_mask_type="object",
        model_config={
            "mode": "multiclass_classification",
            "task_level": "node",
            "return_type": "raw",
        },
    )
    explainer(data.x, data.edge_index, index=0)
    first = GraphGradCAM(model).explain(data, index=0)
    fresh = GraphGradCAM(_seeded(NodeGCN2)).explain(data, index=0)
    torch.testing.assert_close(first.edge_mask, fresh.edge_mask)


# -- bad input: one clear line each, the model unchanged -----------------------------------------


def _bad_inputs() -> list[tuple[object, dict[str, object], type[Exception], str]]:
    data = _graph()
    out_of_range = Data(x=data.x, edge_index=data.edge_index.clone())
    out_of_range.edge_index[0, 0] = 12
    negative = Data(x=data.x, edge_index=data.edge_index.clone())
    negative.edge_index[1, 3] = -1
    return [
        (out_of_range, {"index": 0}, InputError, "edge_index names node 12, outside the graph"),
        (negative, {"index": 0}, InputError, "edge_index names node -1"),
        (Data(x=data.x, edge_index=data.edge_index[:1]), {"index": 0}, InputError, r"\(2, E\)"),
        (Data(x=data.x, edge_index=data.edge_index.float()), {"index": 0}, InputError, "integer"),
        (data, {"index": 12}, InputError, "index 12 is outside the graph of 12 nodes"),
        (data, {"index": -1}, InputError, "index must be a non-negative int"),
        (data, {"index": []}, InputError, "index is empty"),
        (
            Data(x=torch.zeros(0, 3, dtype=torch.float64), edge_index=torch.zeros(2, 0).long()),
            {},
            InputError,
            "empty graph",
        ),
        (torch.zeros(3, 3), {}, InputTypeError, "Data or Batch with x and edge_index"),
        (data, {}, InputError, "node classifier needs index="),
    ]


@pytest.mark.parametrize("case", range(10))
def test_bad_input_is_one_clear_line_and_the_model_is_unchanged(case, state_guard):
    data, kwargs, kind, message = _bad_inputs()[case]
    model = _seeded(NodeGCN2)
    check = state_guard(model)
    with pytest.raises(kind, match=message) as info:
        GraphGradCAM(model).explain(data, **kwargs)
    assert isinstance(info.value, LeanXAIError)
    assert len(str(info.value).splitlines()) == 1
    check()


def test_a_model_without_message_passing_layers_is_refused(state_guard):
    model = nn.Sequential(nn.Linear(3, 2)).double()
    check = state_guard(model)
    with pytest.raises(InputError, match="no torch_geometric message-passing layers"):
        GraphGradCAM(model).explain(_graph(), index=0)
    with pytest.raises(InputError, match="cannot tell which kind of model"):
        leanxai.explain(model, _graph(), index=0)
    check()


def test_a_layer_that_is_not_message_passing_is_refused():
    from leanxai.core.errors import LayerError

    with pytest.raises(LayerError, match="not a message-passing layer"):
        GraphGradCAM(_seeded(NodeGCN2), layer="head").explain(_graph(), index=0)


# -- the connectivity-preserving threshold ---------------------------------------------------------


def test_connected_subgraph_keeps_top_edges_then_the_targets_component():
    # Two triangles 0-1-2 and 3-4-5 joined by nothing, plus a weak edge 2-3.
    edges = [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (2, 3)]
    edge_index = torch.tensor(edges).t()
    scores = torch.tensor([0.9, 0.8, 0.7, 1.0, 0.95, 0.85, 0.1])
    kept = connected_subgraph(scores, edge_index, 6, node=0)
    assert kept.tolist() == pytest.approx([0.9, 0.8, 0.7, 0, 0, 0, 0])
    largest = connected_subgraph(scores, edge_index, 5)  # 3-4-5 keeps 3 edges, 0-1-2 two
    assert (largest > 0).tolist() == [True, True, False, True, True, True, False] or (
        largest > 0
    ).tolist() == [False, False, False, True, True, True, False]
    everything = connected_subgraph(scores, edge_index, 7, node=5)
    assert (everything > 0).all()
    assert connected_subgraph(torch.zeros(7), edge_index, 3).abs().sum() == 0
    with pytest.raises(InputError, match="top must be a positive int"):
        connected_subgraph(scores, edge_index, 0)


def test_ba_shapes_is_seeded_and_leaves_the_global_generators_alone():
    from leanxai.data.graphs import ba_2motifs, ba_shapes

    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    first = ba_shapes(0)
    assert np.random.rand() == expected
    second = ba_shapes(0)
    assert torch.equal(first.edge_index, second.edge_index)
    assert first.edge_mask.shape == (first.edge_index.shape[1],)
    assert int(first.node_mask.sum()) == 400  # 80 houses of 5 nodes
    graphs = ba_2motifs(0, num_graphs=4)
    assert [int(g.y) for g in graphs] == [0, 1, 0, 1]
    assert all(int(g.node_mask.sum()) == 5 for g in graphs)


# -- the command line ------------------------------------------------------------------------------


def tiny_node_gcn() -> nn.Module:
    """A ``py:`` factory for the CLI tests (float64, seeded)."""
    return _seeded(NodeGCN2).float()


def test_cli_explains_a_saved_graph_and_writes_scores_and_a_drawing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from leanxai.cli.main import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    data = _graph()
    data.x = data.x.float()
    torch.save(data, tmp_path / "graph.pt")
    spec = "py:test_graph:tiny_node_gcn"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["explain", f"{tmp_path / 'graph.pt'}:0,3", "--model", spec, "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for node in (0, 3):
        assert (out / f"graph-{node}.png").stat().st_size > 0
        edges = (out / f"graph-{node}-edges.csv").read_text().splitlines()
        assert edges[0] == "edge,source,target,score,kept"
        assert len(edges) == data.num_edges + 1
        nodes = (out / f"graph-{node}-nodes.csv").read_text().splitlines()
        assert len(nodes) == data.num_nodes + 1
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and summary[1].endswith(",ok")

    # Bad input: one line, exit 1; a node outside the graph; a plain .pt for a node classifier.
    bad = CliRunner().invoke(
        main,
        ["explain", f"{tmp_path / 'graph.pt'}:99", "--model", spec, "--out", str(tmp_path / "o1")],
    )
    assert bad.exit_code == 1
    assert "index 99 is outside the graph of 12 nodes" in bad.output
    plain = CliRunner().invoke(
        main,
        ["explain", str(tmp_path / "graph.pt"), "--model", spec, "--out", str(tmp_path / "o2")],
    )
    assert plain.exit_code == 1 and "needs index=" in plain.output
    assert "Traceback" not in bad.output + plain.output


def test_cli_refuses_arbitrary_pickles(tmp_path):
    from leanxai.cli.graphs import load_graph

    torch.save({"x": Exploding}, tmp_path / "evil.pt")  # a class: not allowed by weights_only
    with pytest.raises(InputError, match="cannot read"):
        load_graph(tmp_path / "evil.pt")


# -- what a call caches, and the fast paths: same answers as without them -------------------------


def _assert_same_explanation(got: Explanation, expected: Explanation) -> None:
    assert type(got) is type(expected)
    assert sorted(got.keys()) == sorted(expected.keys())
    for key in expected.keys():
        if isinstance(expected[key], torch.Tensor):
            assert torch.equal(got[key], expected[key]), key
        else:
            assert got[key] == expected[key], key


def test_the_structure_cache_never_returns_a_stale_answer():
    # One explainer, kept across changes to its model: after each, its answer must equal a new
    # explainer's (which has nothing cached).
    model, data = _seeded(GraphGCN2), _graph()
    explainer = GraphGradCAM(model)
    assert explainer.explain(data).path == "forward"  # the cache is filled

    torch.manual_seed(1)
    model.head = nn.Linear(5, 2).double()  # a new head module: its own weights
    _assert_same_explanation(explainer.explain(data), GraphGradCAM(model).explain(data))
    with torch.no_grad():
        model.head.weight.mul_(-1)  # weights edited in place: nothing about them is cached
    _assert_same_explanation(explainer.explain(data), GraphGradCAM(model).explain(data))
    # The head moved one level down: the hook on "head" would still see the same input and output,
    # so a stale head module would pass the check and give the old weights.
    model.head = nn.Sequential(nn.Linear(5, 2).double())
    fresh = GraphGradCAM(model).explain(data)
    _assert_same_explanation(explainer.explain(data), fresh)
    assert not torch.equal(fresh.cam, GraphGradCAM(_seeded(GraphGCN2)).explain(data).cam)

    model.conv2 = _seeded(GraphGCN2, seed=3).conv2  # a replaced message-passing layer
    _assert_same_explanation(explainer.explain(data), GraphGradCAM(model).explain(data))
    explainer.layer = "conv1"  # a new layer argument
    _assert_same_explanation(explainer.explain(data), GraphGradCAM(model, "conv1").explain(data))
    explainer.layer = None

    # An extra message-passing layer the forward never calls is now the default layer: refused.
    model.conv3 = GCNConv(5, 5).double()
    with pytest.raises(LeanXAIError, match="'conv3' must run once"):
        explainer.explain(data)
    del model.conv3
    _assert_same_explanation(explainer.explain(data), GraphGradCAM(model).explain(data))

    other = _seeded(GraphGCN2, seed=5)
    explainer.model = other  # a new model
    _assert_same_explanation(explainer.explain(data), GraphGradCAM(other).explain(data))


class NodeGCNStack(nn.Module):
    """GCNConv layers in a ModuleList, each followed by a ReLU, then a linear head, per node."""

    def __init__(self, layers: int = 2, hidden: int = 3) -> None:
        super().__init__()
        self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x, edge_index))
        return self.head(x)


def test_the_structure_cache_follows_added_layers_of_node_models():
    # A third layer appended: the default layer (convs.2) and the receptive field (3 hops) change.
    model, data = _seeded(NodeGCNStack), _graph(1)
    explainer = GraphGradCAM(model)
    before = explainer.explain(data, index=3)
    assert before.layer == "convs.1"
    torch.manual_seed(7)
    model.convs.append(GCNConv(3, 3).double())
    after = explainer.explain(data, index=3)
    assert after.layer == "convs.2"
    _assert_same_explanation(after, GraphGradCAM(model).explain(data, index=3))
    field = receptive_field(3, data.edge_index, 3, 12)
    assert bool((after.cam[~field] == 0).all())
    del model.convs[2]
    _assert_same_explanation(explainer.explain(data, index=3), before)


def test_explanation_equals_the_one_pygs_constructor_builds():
    node = GraphGradCAM(_seeded(NodeGCN2)).explain(_graph(), index=2)
    graph = GraphGradCAM(_seeded(GraphGCN2)).explain(_graph())
    for explanation in (node, graph):
        rebuilt = Explanation(**{key: explanation[key] for key in explanation.keys()})
        _assert_same_explanation(explanation, rebuilt)
        assert explanation.validate(raise_on_error=False)
        assert explanation.num_nodes == 12 and explanation.num_edges == 36
        assert explanation.get_explanation_subgraph().num_nodes <= 12
    assert "index" not in graph  # None is left out, as PyG's constructor does


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", [(0, 0), (5, 1), (11, 2)])
def test_non_finite_features_are_refused_wherever_they_are(bad, where):
    data = _graph()
    data.x = data.x.clone()
    data.x[where] = bad
    with pytest.raises(InputError, match="contains NaN or infinite values"):
        GraphGradCAM(_seeded(NodeGCN2)).explain(data, index=0)
    data.x[where] = 0.5
    GraphGradCAM(_seeded(NodeGCN2)).explain(data, index=0)

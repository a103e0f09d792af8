"""Our featureless R-GCN computes PyG's RGCNConv(x=None) function, values and gradients."""
import pytest
import torch
from torch_geometric.nn import RGCNConv

from crsbench.models.graph import FeaturelessRGCN, _RelationalPropagation


def _random_graph(n=40, r=5, e=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    edge_type = torch.randint(0, r, (e,), generator=g)
    # duplicated edges, and self-loops, occur in real KGs: include some
    edge_index = torch.cat([edge_index, edge_index[:, :10], torch.arange(n).repeat(2, 1)], dim=1)
    edge_type = torch.cat([edge_type, edge_type[:10], torch.full((n,), r - 1)])
    return edge_index, edge_type


@pytest.mark.parametrize("aggr", ["mean", "add"])
@pytest.mark.parametrize("chunk", [7, 4096])
def test_same_function_and_gradients_as_pyg(aggr, chunk):
    torch.manual_seed(0)
    n, r, b, d = 40, 5, 3, 6
    edge_index, edge_type = _random_graph(n, r)
    ref = RGCNConv(n, d, r, num_bases=b, aggr=aggr)
    with torch.no_grad():
        ref.bias.normal_()        # PyG starts at zero; make the bias term visible in the test
    ours = FeaturelessRGCN(n, d, r, b, edge_index, edge_type, aggr=aggr, chunk=chunk)
    ours.load_state_dict(ref.state_dict())          # same parameter names and shapes
    out_ref = ref(None, edge_index, edge_type)
    out = ours()
    assert torch.allclose(out, out_ref, atol=1e-5)
    target = torch.randn(n, d)
    (out_ref * target).sum().backward()
    (out * target).sum().backward()
    for name, p in ours.named_parameters():
        q = dict(ref.named_parameters())[name]
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_gradcheck_double():
    n, r, b, d = 12, 3, 2, 4
    edge_index, edge_type = _random_graph(n, r, e=30, seed=1)
    layer = FeaturelessRGCN(n, d, r, b, edge_index, edge_type, chunk=5).double()
    layer()                             # moves the graph structure to float64
    params = [p.detach().clone().requires_grad_() for p in (layer.comp, layer.weight)]
    # gradcheck compares the hand-written backward against finite differences
    assert torch.autograd.gradcheck(
        lambda comp, basis: _RelationalPropagation.apply(comp, basis, layer._graph, 5), params)


def test_isolated_nodes_get_root_and_bias_only():
    n, r, b, d = 6, 2, 2, 3
    edge_index = torch.tensor([[0, 1], [1, 2]])
    edge_type = torch.tensor([0, 1])
    layer = FeaturelessRGCN(n, d, r, b, edge_index, edge_type)
    out = layer()
    for node in (0, 3, 4, 5):          # no incoming edges
        assert torch.allclose(out[node], layer.root[node] + layer.bias)

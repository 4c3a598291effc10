"""The MLP: shapes, preprocessing inside the model, invariants, and what L1/L2 touch."""

import pytest
import torch
from torch import nn

from training.model import MLP, Dropout, MLPConfig, weight_penalty


@pytest.mark.parametrize("hidden", [[], [32], [32, 16]])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_logit_shape_and_layer_count(hidden: list[int], activation: str) -> None:
    model = MLP(MLPConfig(classes=5, hidden_sizes=hidden, activation=activation, dropout=0.1))
    assert model(torch.zeros(7, 784)).shape == (7, 5)
    assert len(model.weights()) == len(hidden) + 1


def test_no_hidden_layer_is_softmax_regression() -> None:
    model = MLP(MLPConfig(hidden_sizes=[]))
    assert model.parameter_count() == 784 * 10 + 10
    assert [type(m) for m in model.layers][1:] == [nn.Linear]


def test_preprocessing_is_part_of_the_model() -> None:
    """Raw 0..255 pixels in: the model itself standardizes them."""
    model = MLP(MLPConfig(hidden_sizes=[], pixel_mean=100.0, pixel_std=50.0))
    raw = torch.full((1, 784), 200.0)
    assert torch.allclose(model.layers[0](raw), torch.full((1, 784), 2.0))
    state = model.state_dict()
    assert state["layers.0.mean"] == 100.0 and state["layers.0.inv_std"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": 1}, "a classifier needs at least 2 classes, got 1"),
        ({"hidden_sizes": [8, 0]}, "hidden layer 1 must have at least 1 unit, got 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"activation": "swish"}, "activation must be one of .*, got 'swish'"),
        ({"pixel_std": 0.0}, "pixel_std must be greater than 0, got 0.0"),
        ({"inputs": 0}, "inputs must be at least 1, got 0"),
    ],
)
def test_invariants_name_the_numbers(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLP(MLPConfig(**changes))  # type: ignore[arg-type]


def test_dropout_only_in_training_mode() -> None:
    model = MLP(MLPConfig(hidden_sizes=[64], dropout=0.5))
    x = torch.rand(4, 784) * 255
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))


def test_penalty_is_on_weights_only() -> None:
    torch.manual_seed(0)
    model = MLP(MLPConfig(hidden_sizes=[8]))
    penalty = weight_penalty(model, l1=0.01, l2=0.1)
    expected = sum(0.01 * w.abs().sum() + 0.1 * (w**2).sum() for w in model.weights())
    assert torch.allclose(penalty, expected)
    penalty.backward()
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            assert parameter.grad is None, f"{name} is penalized"
        else:
            assert parameter.grad is not None and torch.count_nonzero(parameter.grad) > 0, name


def test_zero_coefficients_add_nothing() -> None:
    assert weight_penalty(MLP(MLPConfig()), 0.0, 0.0).item() == 0.0


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_byte_mask_dropout_rate_and_mean(p: float) -> None:
    """The cheap mask drops round(256 p)/256 of the units and keeps the expected value."""
    torch.manual_seed(0)
    layer = Dropout(p).train()
    out = layer(torch.ones(512, 1024))
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - round(256 * p) / 256) < 0.005, f"dropped {dropped:.4f} for p={p}"
    assert abs(out.mean().item() - 1.0) < 0.01
    assert torch.equal(layer.eval()(torch.ones(3, 4)), torch.ones(3, 4))

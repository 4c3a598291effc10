"""The MLP: raw 0..255 pixels in, class logits out. Preprocessing is a layer, so ONNX carries it."""

import math
from dataclasses import dataclass, field

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


@dataclass(frozen=True)
class MLPConfig:
    """Shape of the network; saved into the model card next to the training config."""

    inputs: int = 784
    classes: int = 10
    hidden_sizes: list[int] = field(default_factory=lambda: [256])
    activation: str = "relu"
    dropout: float = 0.0
    input_dropout: float = 0.0
    pixel_mean: float = 0.0
    """Subtracted from every raw pixel (0 = no centering)."""
    pixel_std: float = 255.0
    """Divides every centered pixel (255 = plain scaling to 0..1)."""


class Preprocess(nn.Module):
    """(x - mean) / std with constants stored as buffers: the exported graph does it too."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.tensor(1.0 / std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std


class Dropout(nn.Module):
    """Inverted dropout with one random byte per unit: nn.Dropout's maths at a fifth of the cost.

    On CPU, `bernoulli_` (behind nn.Dropout) costs ~10 ns per element; 64-bit random integers
    viewed as bytes cost ~0.5 ns, so the mask is cheap next to the matmuls (in a bf16 step of the
    fashion preset nn.Dropout took a fifth of the time). A unit is dropped when its byte is below
    round(256 p), so the drop rate is p rounded to the nearest 1/256 (0.3 -> 0.3008); survivors
    are scaled by the exact inverse keep rate. In eval mode it is the identity, so the exported
    graph has no dropout node.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = min(round(256 * p), 255)
        self.scale = 256 / (256 - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        words = torch.randint(-(2**63), 2**63 - 1, (math.ceil(x.numel() / 8),), device=x.device)
        keep = words.view(torch.uint8)[: x.numel()].view(x.shape) >= self.threshold
        return x * (keep.to(x.dtype) * self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MLP(nn.Module):
    """Preprocess -> [input dropout] -> [Linear -> activation -> dropout] per hidden layer
    -> Linear (logits).

    With no hidden layers this is softmax regression. Softmax is left to the loss in training
    (cross-entropy on logits is the stable form of categorical cross-entropy) and to the export.
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        if config.inputs < 1:
            raise ValueError(f"inputs must be at least 1, got {config.inputs}")
        if config.classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {config.classes}")
        for index, size in enumerate(config.hidden_sizes):
            if size < 1:
                raise ValueError(f"hidden layer {index} must have at least 1 unit, got {size}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
        if not 0.0 <= config.input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {config.input_dropout}")
        if config.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got '{config.activation}'"
            )
        if not config.pixel_std > 0:
            raise ValueError(f"pixel_std must be greater than 0, got {config.pixel_std}")
        self.config = config
        layers: list[nn.Module] = [Preprocess(config.pixel_mean, config.pixel_std)]
        if config.input_dropout > 0:
            layers.append(Dropout(config.input_dropout))
        width = config.inputs
        for size in config.hidden_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[config.activation]()]
            if config.dropout > 0:
                layers.append(Dropout(config.dropout))
            width = size
        layers.append(nn.Linear(width, config.classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels [N, inputs] (any real dtype) -> logits [N, classes]."""
        return self.layers(x)

    def weights(self) -> list[torch.Tensor]:
        """The Linear weight matrices: what L1/L2 penalize (biases and buffers never are)."""
        return [m.weight for m in self.layers if isinstance(m, nn.Linear)]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def weight_penalty(model: MLP, l1: float, l2: float) -> torch.Tensor:
    """l1 * sum|w| + l2 * sum w^2 over the weight matrices only (Keras' kernel_regularizer)."""
    total = torch.zeros(())
    for weight in model.weights():
        if l1:
            total = total + l1 * weight.abs().sum()
        if l2:
            total = total + l2 * weight.square().sum()
    return total

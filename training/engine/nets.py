"""The networks a run can train: an MLP for any input and a small CNN for images."""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class _CheckpointedSequential(nn.Module):
    """Run blocks in order, recomputing each block's activations in the backward pass when asked."""

    def __init__(self, blocks: list[nn.Module], gradient_checkpointing: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.gradient_checkpointing = gradient_checkpointing

    def forward(self, x):
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden_sizes: list[int], num_outputs: int, dropout: float = 0.0,
                 gradient_checkpointing: bool = False):
        super().__init__()
        blocks = []
        width = in_features
        for size in hidden_sizes:
            blocks.append(nn.Sequential(nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)))
            width = size
        self.flatten = nn.Flatten()
        self.body = _CheckpointedSequential(blocks, gradient_checkpointing)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.head(self.body(self.flatten(x)))


class CNN(nn.Module):
    """Conv-BatchNorm-ReLU blocks, halving the resolution while it stays at least 2, then an MLP head."""

    def __init__(self, input_shape: list[int], conv_channels: list[int], hidden_sizes: list[int], num_outputs: int,
                 dropout: float = 0.0, gradient_checkpointing: bool = False):
        super().__init__()
        in_channels, height, width = input_shape
        blocks = []
        for channels in conv_channels:
            layers = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]
            if min(height, width) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            blocks.append(nn.Sequential(*layers))
            in_channels = channels
        self.features = _CheckpointedSequential(blocks, gradient_checkpointing)
        self.pool = nn.AdaptiveAvgPool2d((min(height, 2), min(width, 2)))
        head_in = in_channels * min(height, 2) * min(width, 2)
        self.head = MLP(head_in, hidden_sizes, num_outputs, dropout)

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


def image_shape(input_shape: list[int]) -> list[int] | None:
    """Return (C, H, W) for image-shaped input, or None for a flat feature vector."""
    if len(input_shape) == 3:
        return list(input_shape)
    if len(input_shape) == 2:
        return [1, *input_shape]
    return None


def build_model(model: str, input_shape: list[int], num_outputs: int, hidden_sizes: list[int],
                conv_channels: list[int], dropout: float, gradient_checkpointing: bool) -> nn.Module:
    """Build the network named by `model` for examples of `input_shape`."""
    if model == "cnn":
        shape = image_shape(input_shape)
        if shape is None:
            raise ValueError(f"the CNN needs image-shaped input (C, H, W) or (H, W), got shape {input_shape}")
        return CNN(shape, conv_channels, hidden_sizes, num_outputs, dropout, gradient_checkpointing)
    in_features = int(torch.tensor(input_shape).prod().item())
    return MLP(in_features, hidden_sizes, num_outputs, dropout, gradient_checkpointing)

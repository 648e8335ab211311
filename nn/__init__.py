"""lwnn's autograd-free engine. The names most code needs, importable as ``nn.Conv2d`` etc.

PyTorch and onnx are never imported here; ``nn.interop`` and ``nn.export`` import them inside their functions.
"""
__version__ = "0.1.0"  # the package version (pyproject.toml reads it); checkpoints record it

from nn.activations import Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Tanh
from nn.basic import Dropout, DropPath, Flatten, Identity
from nn.binary import BinaryConv2d, BinaryLinear
from nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nn.containers import ChannelShuffle, ChannelSplit, Concat, Residual, Sequential, SqueezeExcitation
from nn.conv import Conv1d, Conv2d, ConvTranspose2d
from nn.data import batches, load_dataset, normalize
from nn.embedding import Embedding
from nn.export import to_onnx
from nn.interop import from_torch, to_torch
from nn.linear import Linear
from nn.losses import CrossEntropyLoss, KDLoss, MSELoss
from nn.models import NAMES, build
from nn.module import Module
from nn.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from nn.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR
from nn.pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from nn.profile import model_latency, profile, summary_table, totals
from nn.quant import QuantConv2d, QuantLinear
from nn.recurrent import GRU, LSTM, LastStep
from nn.shift import ShiftConv2d, ShiftLinear
from nn.sparse import SparseConv2d, SparseLinear
from nn.train import evaluate, fit
from nn.upsample import Upsample

__all__ = [
    "GRU",
    "LSTM",
    "NAMES",
    "SGD",
    "Adam",
    "AdamW",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BinaryConv2d",
    "BinaryLinear",
    "ChannelShuffle",
    "ChannelSplit",
    "CheckpointError",
    "Concat",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CosineAnnealingLR",
    "CrossEntropyLoss",
    "DropPath",
    "Dropout",
    "Embedding",
    "Flatten",
    "GroupNorm",
    "Hardsigmoid",
    "Hardswish",
    "Identity",
    "KDLoss",
    "LastStep",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "QuantConv2d",
    "QuantLinear",
    "ReLU",
    "ReLU6",
    "Residual",
    "Sequential",
    "ShiftConv2d",
    "ShiftLinear",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "SparseConv2d",
    "SparseLinear",
    "SqueezeExcitation",
    "StepLR",
    "Tanh",
    "Upsample",
    "batches",
    "build",
    "evaluate",
    "fit",
    "from_torch",
    "load_checkpoint",
    "load_dataset",
    "model_latency",
    "normalize",
    "profile",
    "save_checkpoint",
    "summary_table",
    "to_onnx",
    "to_torch",
    "totals",
]

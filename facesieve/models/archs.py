"""PyTorch architectures whose state-dict layout matches published face models.

Written so the official checkpoints load with ``strict=True``: the module names below *are* the
checkpoint keys (insightface ``arcface_torch`` IResNet, the MobileFaceNet used by eDifFIQA(T),
and eDifFIQA's ``base_model`` + ``mlp`` wrapper). Importing this module needs torch
(``pip install facesieve[torch]``); nothing else in facesieve imports it at module level.
"""

from __future__ import annotations

import torch
from torch import nn

# Blocks per stage of the insightface IResNets.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}

# eDifFIQA variant -> regression backbone (paper: L/M/S are CosFace IResNets, T is MobileFaceNet).
EDIFFIQA_BACKBONES: dict[str, str] = {
    "L": "iresnet100",
    "M": "iresnet50",
    "S": "iresnet18",
    "T": "mobilefacenet",
}


# --------------------------------------------------------------------------- IResNet


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block of IResNet: BN, 3x3, BN, PReLU, 3x3 (strided), BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return y + shortcut


class IResNet(nn.Module):
    """IResNet for 112x112 faces: four stride-2 stages (64..512 ch), then 7x7x512 -> fc -> BN1d."""

    def __init__(self, layers: tuple[int, int, int, int], num_features: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for i, (width, blocks) in enumerate(zip(widths, layers), start=1):
            stage = [IBasicBlock(in_ch, width, stride=2)]
            stage += [IBasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            in_ch = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # arcface_torch keeps the final BN's scale fixed at 1 during training.
        self.features.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


# --------------------------------------------------------------------------- MobileFaceNet


class ConvBlock(nn.Module):
    """Conv (no bias) + BN + PReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.prelu = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """Conv (no bias) + BN, no activation (the 'linear bottleneck')."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to `hidden`, 3x3 depthwise, 1x1 project; optional identity add."""

    def __init__(self, in_ch: int, out_ch: int, hidden: int, stride: int = 2, residual: bool = False) -> None:
        super().__init__()
        self.conv = ConvBlock(in_ch, hidden, kernel=1)
        self.conv_dw = ConvBlock(hidden, hidden, kernel=3, stride=stride, padding=1, groups=hidden)
        self.project = LinearBlock(hidden, out_ch, kernel=1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        return x + y if self.residual else y


class Residual(nn.Module):
    """A run of stride-1 residual DepthWise blocks at constant width."""

    def __init__(self, channels: int, blocks: int, hidden: int) -> None:
        super().__init__()
        self.model = nn.Sequential(*[DepthWise(channels, channels, hidden, stride=1, residual=True) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al. 2018) as used by eDifFIQA(T); returns an L2-normalised feature."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        self.conv1 = ConvBlock(3, 64, kernel=3, stride=2, padding=1)
        self.conv2_dw = ConvBlock(64, 64, kernel=3, stride=1, padding=1, groups=64)
        self.conv_23 = DepthWise(64, 64, hidden=128, stride=2)
        self.conv_3 = Residual(64, blocks=4, hidden=128)
        self.conv_34 = DepthWise(64, 128, hidden=256, stride=2)
        self.conv_4 = Residual(128, blocks=6, hidden=256)
        self.conv_45 = DepthWise(128, 128, hidden=512, stride=2)
        self.conv_5 = Residual(128, blocks=2, hidden=256)
        self.conv_6_sep = ConvBlock(128, 512, kernel=1)
        self.conv_6_dw = LinearBlock(512, 512, kernel=7, groups=512)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_23(self.conv2_dw(self.conv1(x)))
        x = self.conv_45(self.conv_4(self.conv_34(self.conv_3(x))))
        x = self.conv_6_dw(self.conv_6_sep(self.conv_5(x)))
        x = self.bn(self.linear(torch.flatten(x, 1)))
        # Plain division by the norm (no epsilon), as the reference implementation does.
        return x / torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)


# --------------------------------------------------------------------------- eDifFIQA


class QualityMLP(nn.Module):
    """eDifFIQA's regression head: Linear(512->1024), GELU, Linear(1024->1); raw output, no sigmoid."""

    def __init__(self, in_dim: int = 512, hidden_dim: int = 1024, out_dim: int = 1) -> None:
        super().__init__()
        self.l1 = nn.Linear(in_dim, hidden_dim)
        self.ac = nn.GELU()
        self.l2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.ac(self.l1(x)))


class EDifFIQAModel(nn.Module):
    """Backbone feature -> quality MLP. ``forward`` returns [B,1] raw scores (higher = better);
    ``return_feat=True`` returns ``(feature, score)`` as the training code needs."""

    def __init__(self, base_model: nn.Module, mlp: nn.Module, return_feat: bool = False) -> None:
        super().__init__()
        self.base_model = base_model
        self.mlp = mlp
        self.return_feat = return_feat

    def forward(self, x: torch.Tensor):
        feat = self.base_model(x)
        score = self.mlp(feat)
        return (feat, score) if self.return_feat else score


def build_backbone(name: str) -> nn.Module:
    """A randomly initialised backbone by name: iresnet18/34/50/100/200 or mobilefacenet."""
    key = name.lower().replace("-", "").replace("_", "")
    if key in IRESNET_LAYERS:
        return IResNet(IRESNET_LAYERS[key])
    if key in ("mobilefacenet", "mbf"):
        return MobileFaceNet()
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join([*IRESNET_LAYERS, 'mobilefacenet'])}")


def build_ediffiqa(variant: str, return_feat: bool = False) -> EDifFIQAModel:
    """eDifFIQA(L|M|S|T) with random weights, ready for ``load_state_dict(..., strict=True)``."""
    v = str(variant).upper()
    if v not in EDIFFIQA_BACKBONES:
        raise ValueError(f"unknown eDifFIQA variant {variant!r}; choose from L, M, S, T")
    return EDifFIQAModel(build_backbone(EDIFFIQA_BACKBONES[v]), QualityMLP(), return_feat=return_feat)

"""The fused network: a timm image backbone plus a small metadata MLP, joined by a linear head."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import timm
import torch
from torch import nn


@dataclass
class ModelArgs:
    backbone: str = "mobilenetv4_conv_medium"
    meta_dim: int = 16
    meta_hidden: int = 64
    num_classes: int = 4
    dropout: float = 0.3
    drop_path_rate: float = 0.0
    photo_types: int = 0  # > 0: a linear head on the image features that tells dermoscopic from clinical photos
    diagnoses: int = 0    # > 0: a training-only head on the fused features over the fine-grained diagnoses

    def to_dict(self) -> dict:
        return asdict(self)


class SkinLesionNet(nn.Module):
    """Image features (backbone, classifier removed) concatenated with metadata features -> logits.

    The layout follows the SIIM-ISIC 2020 winning solution: Linear -> BN -> SiLU -> Dropout for the
    metadata, concatenation with the pooled image features, one linear layer on top.
    """

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        kwargs = {"drop_path_rate": args.drop_path_rate} if args.drop_path_rate else {}
        self.backbone = timm.create_model(args.backbone, pretrained=False, num_classes=0, **kwargs)
        # MobileNetV3/V4 pool before conv_head: their pooled size is head_hidden_size, not num_features.
        self.feature_dim = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.meta = nn.Sequential(
            nn.Linear(args.meta_dim, args.meta_hidden), nn.BatchNorm1d(args.meta_hidden), nn.SiLU(),
            nn.Dropout(args.dropout),
            nn.Linear(args.meta_hidden, args.meta_hidden), nn.BatchNorm1d(args.meta_hidden), nn.SiLU(),
        )
        self.head = nn.Sequential(nn.Dropout(args.dropout),
                                  nn.Linear(self.feature_dim + args.meta_hidden, args.num_classes))
        # Image features only: the kind of photo is a property of the picture, not of the patient.
        self.photo_head = nn.Linear(self.feature_dim, args.photo_types) if args.photo_types else None
        # "Benign" lumps naevi, keratoses and dermatofibromas together; learning them apart (as the SIIM-ISIC
        # 2020 winners did with nine diagnoses) shapes features that tell them from cancers. The app answers
        # from `head` alone.
        self.diagnosis_head = (nn.Linear(self.feature_dim + args.meta_hidden, args.diagnoses)
                               if args.diagnoses else None)

    def forward_maps(self, image: torch.Tensor) -> torch.Tensor:
        """The last spatial feature maps (B, C, H/32, W/32): what Grad-CAM explains."""
        return self.backbone.forward_features(image)

    def forward_levels(self, image: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the last feature maps, the maps of an earlier feature level) in one pass; `level` indexes timm's
        feature_info (for MobileNetV4-M, 3 is blocks.2: 160 channels at 1/16 of the input size)."""
        maps, (earlier,) = self.backbone.forward_intermediates(image, indices=[level])
        return maps, earlier

    def pool_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps -> pooled image features (global pool, then the backbone's own conv_head)."""
        return self.backbone.forward_head(maps)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        return self.pool_maps(self.forward_maps(image))

    def fuse(self, features: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return torch.cat([features, self.meta(meta)], dim=1)

    def forward_head(self, features: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.head(self.fuse(features, meta))

    def forward_photo_type(self, features: torch.Tensor) -> torch.Tensor | None:
        """Logits over config["photo_types"], or None for weights without that head."""
        return None if self.photo_head is None else self.photo_head(features)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image), meta)

"""Skin-lesion classifier: MobileNetV4 image backbone + metadata MLP. Knows nothing of the app."""
from .checkpoint import CheckpointError, load_model, save_weights
from .classifier import Classifier, Prediction, load_classifier
from .image import ImageError, open_image
from .metadata import MetadataSpec
from .network import ModelArgs, SkinLesionNet

__all__ = ["load_classifier", "Classifier", "Prediction", "CheckpointError", "ImageError", "MetadataSpec",
           "ModelArgs", "SkinLesionNet", "load_model", "save_weights", "open_image"]

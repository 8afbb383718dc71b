"""The classifiers: the original project's CNN trained from scratch, a fine-tuned VGG16, and a compact CNN.

All take raw RGB pixels (0-255) and output [P(mask), P(no-mask)]: the original project's two networks at
224x224, the compact one at the size of the faces it serves (96x96 by default). Each model carries
its own preprocessing as its first layers, so a saved file is all that inference needs: nobody
downstream has to remember whether to divide by 255 or subtract ImageNet means.

Each saved model has a JSON sidecar (facemask.sidecar): the class order, the input size, how the model
was trained, its decision threshold on P(no-mask) and the crop margin its training crops were cut with.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import keras
from keras import layers

from facemask import CLASS_NAMES, IMAGE_SIZE, MAX_MARGIN, not_a_regular_file, save_atomically, save_json
from facemask.sidecar import check_input_size, json_kind, read_sidecar, sidecar_path

COMPACT_SIZE = (96, 96)
# The compact network's blocks: (output channels, stride) of each depthwise-separable block after the stem.
COMPACT_BLOCKS = ((64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
COMPACT_STEM = 32

# A loaded model's input, per side: every face is resized to it and batched, so a file claiming
# 100000x100000 would have the first photo allocate 112 GiB. VGG16 needs at least 32.
KERAS_REASON_CHARS = 150  # of Keras' own refusal, which can quote a whole model config
# ImageNet channel means in BGR order, as keras.applications.vgg16.preprocess_input uses them.
VGG_MEANS_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="facemask")
class VGGPreprocess(layers.Layer):
    """VGG16's "caffe" preprocessing as a layer: RGB to BGR, then subtract the ImageNet means.

    A named layer rather than a Lambda, so the saved model loads in Keras' safe mode.
    """

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(VGG_MEANS_BGR, dtype=inputs.dtype)


class WeightsUnavailable(OSError):
    """VGG16's ImageNet weights could not be downloaded: the message says what to use instead.

    The train command prints it as one `error:` line; a notebook shows just that line too
    (IPython's `_render_traceback_`), since the traceback of a failed download teaches nothing.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            f"VGG16's ImageNet weights could not be downloaded ({error}). Without internet, give a local "
            "copy of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (WEIGHTS = its path in the notebook, "
            "--weights FILE) or use random weights (WEIGHTS = None, --weights none: a test of the plumbing, "
            "not a result)")

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def build_scratch_cnn(image_size: tuple[int, int] = IMAGE_SIZE, dropout: float = 0.5) -> keras.Model:
    """Three conv/pool stages and a dense head: 12,874,466 parameters at 224x224."""
    inputs = keras.Input(shape=(*image_size, 3), name="rgb")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for filters in (32, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    # float32 output keeps the softmax exact under mixed precision.
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")


def build_vgg16(weights: str | None = "imagenet", image_size: tuple[int, int] = IMAGE_SIZE,
                dropout: float = 0.5) -> keras.Model:
    """VGG16's convolutional base with a new head: 21,137,986 parameters at 224x224.

    `weights` is "imagenet" (downloaded by Keras on first use), None (random, for tests and
    offline machines) or the path of a local `..._notop.h5` file. The base starts frozen: the
    head is trained first, then `unfreeze_vgg16` opens the top of the base for fine-tuning.
    """
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"VGG16 weights file not found: {weights}")
    try:
        base = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(*image_size, 3))
    except Exception as error:  # keras.utils.get_file raises a bare Exception when the download fails
        if weights == "imagenet" and str(error).startswith("URL fetch failure"):
            raise WeightsUnavailable(error) from error
        raise
    base.trainable = False
    inputs = keras.Input(shape=(*image_size, 3), name="rgb")
    x = VGGPreprocess(name="vgg_preprocess")(inputs)
    # training=False keeps the base in inference mode even once it is unfrozen (the Keras recipe).
    x = base(x, training=False)
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(256, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="vgg16_finetuned")


# Batch norm's running statistics follow the batches faster than Keras' default (0.99): an epoch of the
# Kaggle training split is only 36 batches, and early stopping judges every epoch on those statistics.
BN_MOMENTUM = 0.9


def separable_block(x, filters: int, stride: int, name: str):
    """Depthwise 3x3, batch norm, ReLU, pointwise 1x1, batch norm, plus the input when the shapes agree
    (a residual), then ReLU: MobileNet's block with a ResNet shortcut, standard layers only."""
    shortcut = x
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_depthwise_bn")(x)
    x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_pointwise_bn")(x)
    if stride == 1 and shortcut.shape[-1] == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_relu")(x)


def build_compact(image_size: tuple[int, int] = COMPACT_SIZE, dropout: float = 0.2) -> keras.Model:
    """A small CNN for small faces, trained from scratch: 142,850 parameters, 13.5 M multiply-adds at 96x96.

    A strided 3x3 stem and six depthwise-separable blocks (three halving the size, three residual): a
    96 px face is down to 24x24 after two layers, about the resolution a Kaggle face has in its photo,
    and to 6x6 at the end; then global average pooling and a softmax. Where the scratch CNN flattens
    50,176 features into one dense layer of 12.8 M weights, this one averages 256. Built from layers
    every converter knows (ONNX, TFLite) with the Functional API; augmentation is never part of it.
    """
    inputs = keras.Input(shape=(*image_size, 3), name="rgb")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(COMPACT_STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for index, (filters, stride) in enumerate(COMPACT_BLOCKS, start=1):
        x = separable_block(x, filters, stride, name=f"block{index}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="compact_cnn")


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one image through the model's convolutions and dense layers (batch norm, pooling,
    activations and additions, a few per value, are left out, as is usual): the cost of a face."""
    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)):
            out_values = math.prod(layer.output.shape[1:-1])  # positions: height x width, or 1 for Dense
            in_channels = layer.input.shape[-1]
            if isinstance(layer, layers.Dense):
                total += in_channels * layer.units
            elif isinstance(layer, layers.DepthwiseConv2D):
                total += out_values * math.prod(layer.kernel_size) * in_channels * layer.depth_multiplier
            elif isinstance(layer, layers.SeparableConv2D):
                depthwise = in_channels * layer.depth_multiplier
                total += out_values * (math.prod(layer.kernel_size) * depthwise + depthwise * layer.filters)
            else:
                total += out_values * math.prod(layer.kernel_size) * in_channels * layer.filters // layer.groups
    return total


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer, nested models (VGG16's base) opened."""
    found = []
    for layer in model.layers:
        found += _all_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


VGG_BASE = "vgg16"  # the name keras.applications gives the convolutional base
VGG_HEAD = ("head_flatten", "head_dense", "head_dropout", "probabilities")
VGG_BLOCKS = ("block1", "block2", "block3", "block4", "block5")


def vgg16_base(model: keras.Model) -> keras.Model:
    """The convolutional base inside a model from `build_vgg16`."""
    return model.get_layer(VGG_BASE)


def vgg16_head(model: keras.Model) -> keras.Model:
    """A model from the base's output (7x7x512 features) to the probabilities that shares its layers
    (and so its weights) with `model`: training it on precomputed features trains `model`'s head."""
    features = keras.Input(shape=vgg16_base(model).output.shape[1:], name="vgg16_features")
    x = features
    for name in VGG_HEAD:
        x = model.get_layer(name)(x)
    return keras.Model(features, x, name="vgg16_head")


def vgg16_features(model: keras.Model) -> keras.Model:
    """RGB 0-255 in, the frozen base's 7x7x512 feature maps out (preprocessing included)."""
    return keras.Model(model.inputs, model.get_layer(VGG_HEAD[0]).input, name="vgg16_features")


def unfreeze_vgg16(model: keras.Model, from_block: str | None = None) -> list[str]:
    """Make the base trainable from `from_block` (e.g. "block5") upwards, or entirely if None.

    Returns the names of the trainable base layers. The model must be compiled again afterwards
    for the change to take effect (the Keras fine-tuning recipe).
    """
    if from_block is not None and from_block not in VGG_BLOCKS:
        raise ValueError(f"unknown VGG16 block {from_block!r}; choose one of {', '.join(VGG_BLOCKS)}")
    base = vgg16_base(model)
    base.trainable = True
    trainable = from_block is None
    for layer in base.layers:
        trainable = trainable or layer.name.startswith(from_block + "_")
        layer.trainable = trainable
    return [layer.name for layer in base.layers if layer.trainable and layer.weights]


def save_model(model: keras.Model, path: Path | str, class_names: list[str] = CLASS_NAMES,
               training: dict | None = None, no_mask_threshold: float | None = None,
               margin: float | None = None) -> Path:
    """Save in the native `.keras` format plus a JSON sidecar holding the class order, the input size,
    from training how the model was trained (`training`, see facemask.config.training_record) and the
    decision threshold on P(no-mask) chosen on validation (`no_mask_threshold`; None: 0.5 is used) and the
    crop margin the training crops were cut with (`margin`; None: DEFAULT_MARGIN is used), see facemask.sidecar.

    Both files are written through temporary files, so neither is ever half-written.
    A compiled model is saved without its optimizer: Adam's two moment estimates per weight would
    triple the file (154 MB instead of 51 MB for the scratch CNN) and inference never needs them.
    A loaded model is therefore uncompiled: `compile` it before `fit` or `evaluate`.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved in the native .keras format; use a .keras file name")
    if no_mask_threshold is not None and not 0 <= no_mask_threshold <= 1:
        raise ValueError(f"the decision threshold is a probability, from 0 to 1, not {no_mask_threshold}")
    if margin is not None and not 0 <= margin <= MAX_MARGIN:
        raise ValueError(f"the crop margin is a fraction from 0 to {MAX_MARGIN:g}, not {margin}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if getattr(model, "optimizer", None) is not None:
        # .keras files always include a compiled model's optimizer (and clone_model compiles its
        # copy), so rebuild the model from its config, uncompiled, and give it the weights.
        lean = type(model).from_config(model.get_config())
        lean.set_weights(model.get_weights())
        model = lean
    save_atomically(path, model.save)
    meta = {"class_names": list(class_names), "image_size": list(model.input_shape[1:3]), "name": model.name}
    if no_mask_threshold is not None:
        meta["no_mask_threshold"] = float(no_mask_threshold)
    if training is not None:
        meta["training"] = training
    if margin is not None:
        meta["margin"] = float(margin)
    save_json(sidecar_path(path), meta)
    return path


def fixed_image_size(model: keras.Model, path: Path | str) -> tuple[int, int]:
    """(height, width) of a model that takes one batch of fixed-size RGB images, else ValueError.

    Images are resized to the model's input before classification, so a model whose input size is
    open (None), or that does not take 3-channel images, has no size to resize to.
    """
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):  # a model that was never built has no input shape
        shape = None
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 3
            and all(isinstance(v, int) and v > 0 for v in shape[1:3])):
        raise ValueError(f"{path}: the model's input shape is {shape}; a classifier here takes RGB images "
                         "of a fixed size, (batch, height, width, 3)")
    return shape[1], shape[2]


def keras_refusal(error: Exception) -> str:
    """Why Keras refused a file, in a short line: a class its config names that Keras does not know (or
    will not load, such as `os.system`), else the gist of Keras' message, which can quote a whole config."""
    text = str(error)
    unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if unknown:
        module = re.search(rf"'module': '([^']+)', 'class_name': '{re.escape(unknown.group(1))}'", text)
        name = f"{module.group(1)}.{unknown.group(1)}" if module else unknown.group(1)
        return f"its config names {name!r}, which Keras does not know or allow"
    inner = text.rsplit("Exception encountered:", 1)[-1].strip()  # a nested error is the real one
    gist = inner.splitlines()[0] if inner else ""
    if len(gist) > KERAS_REASON_CHARS:
        gist = gist[:KERAS_REASON_CHARS - 3] + "..."
    return f"{type(error).__name__}: {gist}" if gist else type(error).__name__


def load_model(path: Path | str) -> tuple[keras.Model, list[str]]:
    """Load a saved classifier and its class names; a clear error names the file otherwise.

    Raises FileNotFoundError for a missing model, ValueError for a FIFO or device given as the model or
    its sidecar (refused unopened), a model Keras cannot read (in one short line), one whose input is not
    fixed-size RGB of MIN_INPUT_SIDE to MAX_INPUT_SIDE pixels a side, or a sidecar that is unreadable or
    disagrees with the model. Without a sidecar the class names are the project's (`CLASS_NAMES`).
    """
    path = Path(path)
    sidecar = sidecar_path(path)
    for file in (path, sidecar):
        if problem := not_a_regular_file(file):
            raise ValueError(f"{file}: {problem}")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    # Check the sidecar first: it is cheap, and a bad one should not cost the seconds a load takes.
    meta = read_sidecar(sidecar) if sidecar.exists() else {"class_names": list(CLASS_NAMES)}
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable Keras model (not a zip file, as every .keras model is)")
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable Keras model ({keras_refusal(error)})") from error
    image_size = fixed_image_size(model, path)
    check_input_size(image_size, path)
    if "image_size" in meta and meta["image_size"] != image_size:
        raise ValueError(f"{sidecar}: 'image_size' is {json_kind(list(meta['image_size']))} but the model "
                         f"{path} takes {list(image_size)}")
    outputs = getattr(model, "output_shape", None)
    if outputs != (None, len(meta["class_names"])):
        raise ValueError(f"{path}: the model's output shape is {outputs}, not one probability for each of its "
                         f"{len(meta['class_names'])} classes {meta['class_names']}")
    return model, meta["class_names"]

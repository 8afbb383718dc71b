"""The two classifiers: a CNN trained from scratch and a fine-tuned VGG16.

Both take raw RGB pixels (0-255, 224x224x3) and output [P(mask), P(no-mask)]. Each model carries
its own preprocessing as its first layers, so a saved file is all that inference needs: nobody
downstream has to remember whether to divide by 255 or subtract ImageNet means.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
from keras import layers

from facemask import CLASS_NAMES, IMAGE_SIZE

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
    base = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(*image_size, 3))
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


def sidecar_path(path: Path | str) -> Path:
    """`models/scratch.keras` keeps its class names in `models/scratch.json`."""
    return Path(path).with_suffix(".json")


def save_model(model: keras.Model, path: Path | str, class_names: list[str] = CLASS_NAMES) -> Path:
    """Save in the native `.keras` format plus a JSON sidecar holding the class order.

    A compiled model is saved without its optimizer: Adam's two moment estimates per weight would
    triple the file (154 MB instead of 51 MB for the scratch CNN) and inference never needs them.
    A loaded model is therefore uncompiled: `compile` it before `fit` or `evaluate`.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved in the native .keras format; use a .keras file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if getattr(model, "optimizer", None) is not None:
        # .keras files always include a compiled model's optimizer (and clone_model compiles its
        # copy), so rebuild the model from its config, uncompiled, and give it the weights.
        lean = type(model).from_config(model.get_config())
        lean.set_weights(model.get_weights())
        model = lean
    model.save(path)
    meta = {"class_names": list(class_names), "image_size": list(model.input_shape[1:3]), "name": model.name}
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_model(path: Path | str) -> tuple[keras.Model, list[str]]:
    """Load a saved classifier and its class names; a clear error names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable Keras model ({type(error).__name__}: {error})") from error
    sidecar = sidecar_path(path)
    class_names = json.loads(sidecar.read_text())["class_names"] if sidecar.is_file() else list(CLASS_NAMES)
    return model, class_names

"""CIFAR backbones: ResNet-18/34/50 with the CIFAR stem and WideResNet-28-k.

keras-hub's `ResNetBackbone` has the ImageNet stem (7x7 stride-2 convolution
and max-pooling), which throws away most of a 32 x 32 image; these are the
CIFAR variants used in the Neural Collapse literature:

- ResNet (He et al. 2016, CIFAR variant of the common PyTorch reference): a
  3x3 stride-1 convolution stem without max-pooling, four stages of basic
  blocks (18, 34) or bottlenecks (50) with 64, 128, 256, 512 base channels,
  1x1 convolution + batch-norm projection shortcuts where the shape changes,
  global average pooling.
- WideResNet-28-k (Zagoruyko and Komodakis 2016): pre-activation basic blocks,
  three groups of four blocks with 16k, 32k, 64k channels, 1x1 convolution
  shortcuts where the shape changes, final batch-norm + ReLU, global average
  pooling.

Every builder returns a functional `keras.Model` from images `(H, W, C)` of
any size and channel count to features `(d,)`, the backbone of a
`keras_nc.models.CollapseClassifier`; `width` scales every channel count (for
quick CPU runs). Parameter counts with a C-way linear head match the usual
ones (ResNet-18 for CIFAR-10: 11,173,962).

Example:

```python
backbone = build_backbone("resnet18", input_shape=(32, 32, 3), width=0.25)
model = keras_nc.models.CollapseClassifier(backbone, num_classes=10)
```
"""

import re

import keras

RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
# Any WideResNet `wrn<depth>_<k>` with depth = 6n + 4 >= 10 (wrn28_2, wrn10_2, ...).
BACKBONES = (*RESNETS, "wrn<depth>_<k>")


def _channels(base, width):
    return max(1, round(base * width))


def _conv(filters, kernel_size, strides, name, regularizer):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=name,
    )


def _bn(name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _basic_block(x, filters, strides, name, regularizer):
    shortcut = x
    x = _conv(filters, 3, strides, f"{name}_conv1", regularizer)(x)
    x = keras.layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(x))
    x = _conv(filters, 3, 1, f"{name}_conv2", regularizer)(x)
    x = _bn(f"{name}_bn2")(x)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_shortcut_conv", regularizer)(shortcut)
        shortcut = _bn(f"{name}_shortcut_bn")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _bottleneck_block(x, filters, strides, name, regularizer, expansion=4):
    shortcut = x
    x = _conv(filters, 1, 1, f"{name}_conv1", regularizer)(x)
    x = keras.layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(x))
    x = _conv(filters, 3, strides, f"{name}_conv2", regularizer)(x)
    x = keras.layers.ReLU(name=f"{name}_relu2")(_bn(f"{name}_bn2")(x))
    x = _conv(filters * expansion, 1, 1, f"{name}_conv3", regularizer)(x)
    x = _bn(f"{name}_bn3")(x)
    if strides != 1 or shortcut.shape[-1] != filters * expansion:
        shortcut = _conv(filters * expansion, 1, strides, f"{name}_shortcut_conv", regularizer)(
            shortcut
        )
        shortcut = _bn(f"{name}_shortcut_bn")(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def cifar_resnet(depth, input_shape=(32, 32, 3), width=1.0, kernel_regularizer=None):
    """ResNet-18, -34 or -50 with the CIFAR stem, as a features backbone.

    Args:
        depth: 18, 34 or 50.
        input_shape: `(height, width, channels)`; any size and channel count.
        width: multiplier of every channel count (1.0: 64, 128, 256, 512).
        kernel_regularizer: regulariser of every convolution kernel (the
            recipe passes `L2(weight_decay / 2)`, PyTorch's SGD weight decay).

    Returns:
        A `keras.Model` from images to `(512 * width,)` features (`2048 *
        width` for ResNet-50), named `resnet{depth}`.
    """
    name = f"resnet{depth}"
    if name not in RESNETS:
        raise ValueError(f"`depth` must be 18, 34 or 50; received {depth!r}.")
    block_type, blocks = RESNETS[name]
    block = _basic_block if block_type == "basic" else _bottleneck_block
    inputs = keras.Input(input_shape, name="images")
    x = _conv(_channels(64, width), 3, 1, "stem_conv", kernel_regularizer)(inputs)
    x = keras.layers.ReLU(name="stem_relu")(_bn("stem_bn")(x))
    for stage, num_blocks in enumerate(blocks):
        filters = _channels(64 * 2**stage, width)
        for index in range(num_blocks):
            strides = 2 if stage > 0 and index == 0 else 1
            x = block(x, filters, strides, f"stage{stage + 1}_block{index + 1}", kernel_regularizer)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name=name)


def wide_resnet(
    depth=28, k=2, input_shape=(32, 32, 3), width=1.0, dropout=0.0, kernel_regularizer=None
):
    """WideResNet-depth-k (pre-activation) as a features backbone.

    Args:
        depth: `6n + 4` (28 gives four blocks per group).
        k: widening factor: groups of `16k`, `32k`, `64k` channels.
        input_shape: `(height, width, channels)`.
        width: extra multiplier of every channel count, for quick runs.
        dropout: dropout rate between the two convolutions of a block.
        kernel_regularizer: regulariser of every convolution kernel.

    Returns:
        A `keras.Model` from images to `(64 * k * width,)` features, named
        `wrn{depth}_{k}`.
    """
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"`depth` must be 6n + 4 with n >= 1 (e.g. 28); received {depth!r}.")
    if k < 1:
        raise ValueError(f"`k` must be a positive integer; received {k!r}.")
    per_group = (depth - 4) // 6
    inputs = keras.Input(input_shape, name="images")
    x = _conv(_channels(16, width), 3, 1, "stem_conv", kernel_regularizer)(inputs)
    for group in range(3):
        filters = _channels(16 * k * 2**group, width)
        for index in range(per_group):
            name = f"group{group + 1}_block{index + 1}"
            strides = 2 if group > 0 and index == 0 else 1
            activated = keras.layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(x))
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = _conv(filters, 1, strides, f"{name}_shortcut_conv", kernel_regularizer)(
                    activated
                )
            y = _conv(filters, 3, strides, f"{name}_conv1", kernel_regularizer)(activated)
            y = keras.layers.ReLU(name=f"{name}_relu2")(_bn(f"{name}_bn2")(y))
            if dropout:
                y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
            y = _conv(filters, 3, 1, f"{name}_conv2", kernel_regularizer)(y)
            x = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    x = keras.layers.ReLU(name="final_relu")(_bn("final_bn")(x))
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name=f"wrn{depth}_{k}")


def build_backbone(name, input_shape=(32, 32, 3), width=1.0, kernel_regularizer=None):
    """A backbone by name: `resnet18`, `resnet34`, `resnet50` or `wrn<depth>_<k>`.

    `wrn<depth>_<k>` is any WideResNet with `depth = 6n + 4 >= 10` and widening
    factor `k` (`wrn28_2` in the papers, `wrn10_2` on a CPU).

    Example:

    ```python
    build_backbone("wrn28_2", input_shape=(28, 28, 1), width=0.5)
    ```
    """
    if not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"`width` must be a positive number; received {width!r}.")
    if name in RESNETS:
        return cifar_resnet(int(name[6:]), input_shape, width, kernel_regularizer)
    match = re.fullmatch(r"wrn(\d+)_(\d+)", name)
    if match:
        depth, k = int(match.group(1)), int(match.group(2))
        return wide_resnet(depth, k, input_shape, width, kernel_regularizer=kernel_regularizer)
    raise ValueError(f"`name` must be one of {', '.join(BACKBONES)}; received {name!r}.")

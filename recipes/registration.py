"""Keras serialisation names of the recipes' classes, each recipe under its own package.

A recipe's class is registered as `keras_nc_recipes.<recipe>>ClassName` (for
example `keras_nc_recipes.clip>CLIPClassifier`), never under the library's
`keras_nc` package: a saved `FreeMatch` says it comes from the semi-supervised
recipe, and a future library class of the same name cannot load in its place.

Models saved by keras-nc 0.2.0 and earlier name their recipe classes
`keras_nc>ClassName`. Those names stay registered as deprecated aliases: loading
such a file gives a `DeprecationWarning` and the object of the new class; saving
it again writes the new name. Aliases are kept for one release.

Example:

>>> import keras
>>> @serializable("example")
... class Scale(keras.layers.Layer):
...     pass
>>> keras.saving.get_registered_name(Scale)
'keras_nc_recipes.example>Scale'
>>> "keras_nc>Scale" in keras.saving.get_custom_objects()
True
"""

import warnings

import keras

PACKAGE = "keras_nc_recipes"
LEGACY_PACKAGE = "keras_nc"
LEGACY_UNTIL = "0.3.0"


def package_of(recipe):
    """The Keras registration package of `recipe` (`keras_nc_recipes.<recipe>`)."""
    if not isinstance(recipe, str) or not recipe.isidentifier():
        raise ValueError(f"`recipe` must be a module-like name such as 'clip'; got {recipe!r}")
    return f"{PACKAGE}.{recipe}"


class LegacyName:
    """The registry entry of a pre-0.3 name: deserialises to `cls`, with a warning."""

    def __init__(self, cls, legacy_name):
        self.cls = cls
        self.legacy_name = legacy_name
        self.__name__ = cls.__name__

    def from_config(self, config):
        warnings.warn(
            f"`{self.legacy_name}` was saved by keras-nc 0.2.0 or earlier; it loads as "
            f"`{keras.saving.get_registered_name(self.cls)}`, and the old name stops loading "
            f"after keras-nc {LEGACY_UNTIL} (deprecated since 0.3.0). Save the model again "
            "to write the new name.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.cls.from_config(config)

    def __call__(self, *args, **kwargs):
        return self.cls(*args, **kwargs)


def serializable(recipe):
    """Class decorator: registers the class under `keras_nc_recipes.<recipe>`.

    Also registers the class's pre-0.3 name `keras_nc>ClassName` as a
    deprecated alias (`LegacyName`), so that models saved before still load.
    """
    package = package_of(recipe)

    def decorate(cls):
        cls = keras.saving.register_keras_serializable(package=package)(cls)
        legacy = f"{LEGACY_PACKAGE}>{cls.__name__}"
        keras.saving.get_custom_objects()[legacy] = LegacyName(cls, legacy)
        return cls

    return decorate

"""Deprecated names that keep working for one release, with a `DeprecationWarning`.

Renames and moves are listed in the project's `CHANGELOG.md`; each old name
warns with the new one when it is used.

Example:

>>> import warnings
>>> @renamed_arguments(anchors="head_weights")
... def measure(features, head_weights=None):
...     return head_weights
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     measure(1, anchors=2)
2
>>> str(caught[0].message)
'`anchors` is deprecated since keras-nc 0.2.0; use `head_weights`.'
"""

import functools
import warnings

SINCE = "0.2.0"


def warn_renamed(old, new, since=SINCE, stacklevel=3):
    """Warns that `old` is deprecated in favour of `new`."""
    warnings.warn(
        f"`{old}` is deprecated since keras-nc {since}; use `{new}`.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_arguments(**renames):
    """Decorator: keyword arguments renamed `old=new` still work, with a warning.

    Passing both the old and the new name is a `TypeError`.
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{function.__name__}() got both `{old}` (deprecated) and `{new}`; "
                            f"pass `{new}` only."
                        )
                    warn_renamed(old, new)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


def renamed_property(old, new):
    """A read-only property `old` that returns attribute `new`, with a warning.

    Example: `head_rows = renamed_property("head_rows", "head_weights")` in a class body.
    """

    def getter(self):
        warn_renamed(f"{type(self).__name__}.{old}", f"{type(self).__name__}.{new}")
        value = getattr(self, new)
        return value

    return property(getter, doc=f"Deprecated alias of `{new}` (since keras-nc {SINCE}).")

"""`recipes.clip.model`: the names of keras-nc 0.2.0's one CLIP module, re-exported.

The recipe is split as keras-hub splits a task (docs/clip.md):
`recipes.clip.loading` (presets, tokenizer, image converter),
`recipes.clip.prompt_learner` (`PromptLearner`), `recipes.clip.modes`
(`PromptMode`, `HeadMode`, `FullMode`) and `recipes.clip.classifier`
(`CLIPClassifier`). Importing from here keeps working.

Example:

```python
from recipes.clip.model import CLIPClassifier  # the same class as recipes.clip.classifier's
```
"""

from recipes.clip.classifier import MODES, CLIPClassifier
from recipes.clip.loading import (
    DEFAULT_CONTEXT_INIT,
    DEFAULT_TEMPLATES,
    PresetUnavailableError,
    default_image_converter,
    load_clip,
    pad_token_ids,
    text_embeddings,
    tokenize,
)
from recipes.clip.modes import CLIPMode, FullMode, HeadMode, PromptMode
from recipes.clip.prompt_learner import PromptLearner

__all__ = [
    "DEFAULT_CONTEXT_INIT",
    "DEFAULT_TEMPLATES",
    "MODES",
    "CLIPClassifier",
    "CLIPMode",
    "FullMode",
    "HeadMode",
    "PresetUnavailableError",
    "PromptLearner",
    "PromptMode",
    "default_image_converter",
    "load_clip",
    "pad_token_ids",
    "text_embeddings",
    "tokenize",
]

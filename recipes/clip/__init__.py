"""Few-shot CLIP fine-tuning (keras-hub) with the CMA loss: model, data and program."""

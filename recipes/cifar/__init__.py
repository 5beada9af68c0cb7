"""Supervised CIFAR recipe: backbones, training program and report."""

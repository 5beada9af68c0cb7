"""Grokking recipe: modular arithmetic with Neural Collapse measures as progress measures."""

"""Explanations: saliency methods as a registry, and the measures computed on input gradients."""

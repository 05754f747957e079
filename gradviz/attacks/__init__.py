"""Adversarial attacks as one registry: the L∞ family (FGSM, TGSM, PGD, MI-FGSM) and JSMA."""

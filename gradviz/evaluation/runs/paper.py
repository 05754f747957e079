"""The paper's published MNIST numbers (from ../shared/PAPER.md), for overlays and the reproduction report."""

PAPER_CLEAN = {"normal": 0.9930, "distilled": 0.9940, "advtrain": 0.9920, "gradreg-uniform": 0.9944,
               "gradreg": 0.9942}

# FGSM examples made on the normal model, accuracy of each evaluated model (256 test images).
PAPER_FGSM_FROM_NORMAL = {
    "normal": {0.1: .727, 0.2: .277, 0.3: .113, 0.4: .070, 0.5: .043, 0.7: .039},
    "distilled": {0.1: .945, 0.2: .578, 0.3: .211, 0.4: .074, 0.5: .062, 0.7: .051},
    "advtrain": {0.1: .984, 0.2: .973, 0.3: .855, 0.4: .457, 0.5: .176, 0.7: .066},
    "gradreg-uniform": {0.1: .980, 0.2: .926, 0.3: .742, 0.4: .488, 0.5: .305, 0.7: .125},
    "gradreg": {0.1: .984, 0.2: .922, 0.3: .797, 0.4: .621, 0.5: .395, 0.7: .227},
}

# The paper's accuracy-vs-ε curves on examples made on its normal model, by attack (it plots FGSM only).
PAPER_CURVES_FROM_NORMAL = {"fgsm": PAPER_FGSM_FROM_NORMAL}

# White-box FGSM accuracy at ε = 0.2 and 0.3.
PAPER_WHITEBOX_FGSM = {"normal": {0.2: .277, 0.3: .113}, "distilled": {0.2: .992, 0.3: .992},
                       "advtrain": {0.2: .992, 0.3: .965}, "gradreg-uniform": {0.2: .547, 0.3: .113},
                       "gradreg": {0.2: .652, 0.3: .277}}
PAPER_WHITEBOX = {"fgsm": PAPER_WHITEBOX_FGSM}  # by attack: the paper reports white-box FGSM only

# Mean FGSM transfer accuracy from the three non-distilled other sources, at ε = 0.3, 0.4, 0.5.
PAPER_MEAN_TRANSFER = {"normal": {0.3: .439, 0.4: .174, 0.5: .087}, "advtrain": {0.3: .697, 0.4: .247, 0.5: .094},
                       "gradreg-uniform": {0.3: .664, 0.4: .409, 0.5: .259},
                       "gradreg": {0.3: .698, 0.4: .480, 0.5: .322}}

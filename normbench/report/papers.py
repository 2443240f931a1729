"""The papers' setups, claims and numbers that our reports are set beside.

Each is transcribed from docs/papers.md, which gives its source (paper, table, figure,
section) and how sure it is; tests/test_report_papers.py checks that the numbers here are
the ones there.
"""

from __future__ import annotations

BN_FIG1 = {
    "paper": "Ioffe & Szegedy, Batch Normalization, ICML 2015, Figure 1 (§4.1)",
    "setup": {
        "dataset": "MNIST, 28x28 binary images",
        "network": "784-100-100-100-10, sigmoid, small random Gaussian initial weights",
        "training": "SGD, 50,000 steps of 60 examples (learning rate not stated)",
        "norm": "BN on each hidden layer's pre-activation Wu (bias dropped, β takes its role)",
        "probe": "15/50/85th percentiles of the input to a typical sigmoid of the last hidden layer",
    },
    "claims": [
        "Fig. 1(a): the BN network reaches a given test accuracy in fewer steps and has higher "
        "test accuracy throughout (read off the figure, not stated as a number: BN ≈ 0.98+ vs "
        "≈ 0.96–0.97 without BN late in training; docs/papers.md §1.1 marks this [MEM])",
        "Fig. 1(b, c): without BN the sigmoid input distribution shifts significantly over "
        "training; with BN it remains much more stable",
    ],
}

# Wu & He, Group Normalization (ECCV 2018), docs/papers.md §2: ResNet-50 on ImageNet, 8 GPUs, BN
# statistics per GPU, top-1 val error (%) = median of the final 5 epochs. Keys: images per GPU.
GN_PAPER = {
    "paper": "Wu & He, Group Normalization, ECCV 2018 (arXiv 1803.08494), Figure 1 / Tables 1–2",
    "table2": {  # sensitivity to images per GPU
        "batch": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
        "group": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
    },
    "table1": {"batch": 23.6, "layer": 25.3, "instance": 28.4, "group": 24.1},  # 32 images per GPU
    "batch_renorm": {4: 26.3},  # BRN tuned to r_max = 1.5, d_max = 0.5 (§5.1)
    "setup": {
        "data": "ImageNet, 1.28M train / 50k val images, 224x224 crops (scale + flip augmentation)",
        "model": "ResNet-50 (25.6M parameters), GN with G = 32",
        "devices": "8 GPUs, BN statistics per GPU (not synchronized); batch = 8 x images per GPU",
        "optim": "SGD momentum 0.9, weight decay 1e-4 (gamma and beta included), lr 0.1 x N/32, "
        "100 epochs, lr /10 at epochs 30, 60, 90",
        "init": "He init; gamma = 1, except 0 in the last norm of each residual block",
        "metric": "median top-1 val error of the final 5 epochs",
    },
    "claims": {
        "bn_rise": "BN's error is flat down to about 16 images per GPU, rises noticeably at 8 and "
        "sharply at 4 and 2 (23.6 → 24.8 → 27.3 → 34.7)",
        "gn_flat": "GN's error stays flat (within about ±0.2) across images per GPU",
        "bn_beats_gn": "At 32 images per GPU, BN beats GN by about 0.5 (on CIFAR-scale data the "
        "authors' own reproduction has GN about 1 point behind BN)",
        "ln_in": "At 32 images per GPU, LN is worse than GN and IN is much worse (25.3, 28.4 vs 24.1)",
        "gn_wins_small": "At 2 images per GPU, GN has 10.6 lower error than BN",
        "brn": "Batch Renorm recovers part, not all, of BN's small-batch loss (4 per GPU: BRN 26.3 "
        "vs BN 27.3 and GN 24.2)",
        "brn_normal": "At normal batch Batch Renorm is about as good as BN (Ioffe 2017)",
    },
}

# Peng et al., MegDet (CVPR 2018), docs/papers.md §2.7: cross-GPU (synchronized) BN. The abstract
# is read; no table of it is transcribed, so the claim has no number here.
MEGDET = {
    "paper": "Peng et al., MegDet: A Large Mini-Batch Object Detector, CVPR 2018 (arXiv 1711.07240)",
    "claims": {
        "sync_bn": "Cross-GPU (synchronized) BN, whose statistics span every device, removes the "
        "penalty that BN with per-device statistics pays at a small batch per device",
    },
}

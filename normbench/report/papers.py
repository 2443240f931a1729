"""The papers' setups and claims that our reports are set beside (see shared PAPERS.md)."""

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
        "≈ 0.96–0.97 without BN late in training; PAPERS.md marks this [MEM])",
        "Fig. 1(b, c): without BN the sigmoid input distribution shifts significantly over "
        "training; with BN it remains much more stable",
    ],
}

"""Figures for the notebooks (provided)."""
import matplotlib.pyplot as plt
import numpy as np

from .i18n import N_, _

# name -> (title, function(n, c) telling whether cell (n, c) shares the statistic of the highlighted one)
_SCHEMES = {
    "batch": (N_("Batch norm\n(N, H, W) per channel"), lambda n, c, G, C: c == 1),
    "layer": (N_("Layer norm\n(C, H, W) per sample"), lambda n, c, G, C: n == 1),
    "instance": (N_("Instance norm\n(H, W) per sample and channel"), lambda n, c, G, C: n == 1 and c == 1),
    "group": (N_("Group norm\n(C//G, H, W) per sample and group"), lambda n, c, G, C: n == 1 and c // (C // G) == 0),
}


def plot_normalization_axes(N=4, C=6, G=2, ax=None):
    """
    Draw which entries of an (N, C, H*W) tensor share one mean and variance,
    for batch, layer, instance and group normalization (as in Wu & He, 2018).
    Each panel is a grid of samples (rows) by channels (columns); every cell
    stands for the H*W spatial positions of that sample and channel, and the
    shaded cells are normalized together with the highlighted sample.
    """
    if C % G:
        raise ValueError(f"G={G} must divide C={C}")
    axes = ax if ax is not None else plt.subplots(1, 4, figsize=(14, 3.6))[1]
    for panel, (title, shares) in zip(axes, _SCHEMES.values()):
        mask = np.array([[shares(n, c, G, C) for c in range(C)] for n in range(N)], dtype=float)
        panel.imshow(mask, cmap="Blues", vmin=-0.3, vmax=1.2)
        panel.set_xticks(range(C))
        panel.set_yticks(range(N))
        panel.set_xticks(np.arange(-0.5, C), minor=True)
        panel.set_yticks(np.arange(-0.5, N), minor=True)
        panel.grid(which="minor", color="white", linewidth=2)
        panel.tick_params(which="minor", length=0)
        panel.set_xlabel(_("channel C (each cell: H*W positions)"))
        panel.set_ylabel(_("sample N"))
        panel.set_title(_(title))
    plt.tight_layout()
    return axes

"""normlab: normalization layers for deep learning, CS231n assignment 2 style.

Your work goes into normlab/layers.py (the functions that raise
NotImplementedError). Everything else here is provided.
"""

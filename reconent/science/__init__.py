"""The science: plain functions and torch modules, free of Ray and of storage (SCIENCE.md).

models (bodies as blocks, streams) and archs (one module per architecture), probe (the cascade
probe), entropy, theory (mean field), data (datasets), train (ground truth).
"""

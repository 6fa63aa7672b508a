import math

import numpy as np
import pytest
import torch

from reconent.science.entropy import (as_distribution, cutoff_from_normalised, differential_entropy_from_std,
                                      normalised, relative_entropy)


def differential_entropy(xhat):
    """H of a batch as the probe computes it: per-pixel σ of the normalised samples, then the Gaussian H."""
    return differential_entropy_from_std(as_distribution(xhat).std(dim=0, unbiased=False))


def test_kl_of_identical_images_is_zero():
    x = torch.rand(5, 784)
    assert torch.allclose(relative_entropy(x, x.clone()), torch.zeros(5, dtype=torch.float64), atol=1e-12)


def test_kl_known_small_case():
    # x = [0, 1] -> p ≈ [0, 1]; xhat = [0, 1, ...]. Use 2-pixel images with known distributions:
    # x = [1, 3] -> shifted [0, 2]+ε -> p ≈ [0, 1]; xhat = [0, 1] -> q ≈ [0, 1]: KL ≈ 0.
    # x = [0, 1, 1] -> p = [0, .5, .5]; xhat = [0, 1, 3] -> q = [0, .25, .75]
    x = torch.tensor([[0.0, 1.0, 1.0]])
    xhat = torch.tensor([[0.0, 1.0, 3.0]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert relative_entropy(x, xhat).item() == pytest.approx(expected, abs=1e-9)
    # KL is not symmetric, and is positive for different images
    back = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert relative_entropy(xhat, x).item() == pytest.approx(back, abs=1e-9)


def test_kl_invariant_to_shifting_pixel_values():
    g = torch.Generator().manual_seed(0)
    x, xhat = torch.rand(4, 100, generator=g), torch.rand(4, 100, generator=g)
    base = relative_entropy(x, xhat)
    assert torch.allclose(relative_entropy(x + 3.0, xhat), base, atol=1e-9)
    assert torch.allclose(relative_entropy(x, xhat - 0.7), base, atol=1e-9)


def test_distribution_sums_to_one_and_is_positive():
    p = as_distribution(torch.randn(3, 50))
    assert torch.allclose(p.sum(1), torch.ones(3, dtype=torch.float64))
    assert (p > 0).all()


def test_differential_entropy_of_a_gaussian_with_known_sigma():
    # H = ½ ln(2πe σ²) per pixel, averaged over pixels
    for sigma in (1e-3, 0.1, 2.0):
        assert differential_entropy_from_std(torch.full((50,), sigma, dtype=torch.float64)) == pytest.approx(
            0.5 * math.log(2 * math.pi * math.e * sigma**2), abs=1e-8)  # ε = 1e-12 inside the ln
    s = torch.tensor([0.1, 1.0], dtype=torch.float64)
    assert differential_entropy_from_std(s) == pytest.approx(0.5 * math.log(2 * math.pi * math.e) + math.log(0.1) / 2)


def test_differential_entropy_of_known_spread():
    # Samples that are the same image shifted in scale only: after normalisation all equal -> σ = 0
    x = torch.rand(1, 64).repeat(10, 1) * torch.arange(1, 11).unsqueeze(1)
    assert differential_entropy(x) < -20  # ln(0 + ε) dominates
    # More variation across the batch means higher entropy: a fixed pattern plus small or large noise
    g = torch.Generator().manual_seed(1)
    pattern = torch.rand(1, 64, generator=g)
    narrow = pattern + 0.01 * torch.rand(200, 64, generator=g)
    wide = pattern + 1.0 * torch.rand(200, 64, generator=g)
    assert differential_entropy(wide) > differential_entropy(narrow) + 3


def test_cutoff_walks_from_the_deepest_layer():
    norm = [0.5, 0.8, 0.99, 0.999, 1.002, 1.0]
    assert cutoff_from_normalised(norm, rtol=0.005) == 3
    assert cutoff_from_normalised(norm, rtol=0.02) == 2
    assert cutoff_from_normalised(norm, rtol=0.6) == 0
    # a bump after the plateau sets in still counts: it is the deepest layer off the plateau
    assert cutoff_from_normalised([0.5, 1.0, 1.0, 0.9, 1.0], rtol=0.005) == 4
    assert cutoff_from_normalised([np.nan, 1.0], rtol=0.005) == 1


def test_cutoff_normalises_per_sample_before_the_median():
    # two samples with different scales but the same shape: per-sample normalisation makes them equal
    S = np.array([[1.0, 10.0], [1.9, 19.0], [2.0, 20.0], [2.0, 20.0]])
    n = normalised(S)
    np.testing.assert_allclose(n[:, 0], n[:, 1])
    np.testing.assert_allclose(n[-1], 1.0)
    np.testing.assert_allclose(n[:, 0], [0.5, 0.95, 1.0, 1.0])
    assert cutoff_from_normalised(np.median(n, axis=1), rtol=0.01) == 2
    # the median over samples of the normalised curves: [0.5, 0.99, 1, 1] here, so layer 2 is off at 0.005
    S3 = np.array([[1.0, 1.0, 50.0], [2.0, 1.5, 99.0], [2.0, 1.9, 100.0], [2.0, 2.0, 100.0]])
    assert cutoff_from_normalised(np.median(normalised(S3), axis=1), rtol=0.005) == 2



def test_depth_cutoff_counts_blocks_after_the_stem_skips_unevaluated_layers_and_flags_censoring():
    from reconent.science.entropy import depth_cutoff

    # layer 2 is the deepest off the plateau (|0.9 - 1| > 0.005): an MLP of depth 4 has its cutoff there
    assert depth_cutoff([0.5, 0.9, 0.999, 1.0], 0.005, 4) == (2, 0, 2, False)
    # the same profile behind a 3-layer stem (7 probe layers, depth 4): layer 5 is block 2
    assert depth_cutoff([0.1, 0.2, 0.3, 0.5, 0.9, 0.999, 1.0], 0.005, 4) == (5, 3, 2, False)
    # null layers were not evaluated and are passed over, not read as "off the plateau"
    assert depth_cutoff([0.5, None, None, 1.0, 1.0], 0.005, 5) == (1, 0, 1, False)
    # still moving at the last-but-one layer: no plateau inside the probe
    assert depth_cutoff([0.5, 0.8, 0.95, 1.0], 0.005, 4) == (3, 0, 3, True)

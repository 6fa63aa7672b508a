import numpy as np
import pytest
import torch

from reconent.science import data
from reconent.science.archs.mlp import mlp
from reconent.science.probe import probe


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist5k")


def small(depth, seed=0, sigma_w2=1.76, width=64, **kw):
    """One pass over 300 samples (5 steps) unless a budget is given: these tests do not depend on it."""
    if "steps" not in kw:
        kw.setdefault("epochs", 1)
    g = torch.Generator().manual_seed(123)
    x, ev = torch.rand(300, width, generator=g), torch.rand(40, width, generator=g)
    return probe(mlp(depth, width, width, "tanh", sigma_w2, 0.05, seed), x, ev, **kw)


def test_prefix_property_deep_profile_restricted_equals_shallow():
    deep, shallow = small(6), small(3)
    np.testing.assert_allclose(deep.relative_entropy[:3], shallow.relative_entropy, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(deep.decoder_loss[:3], shallow.decoder_loss, rtol=1e-5)
    np.testing.assert_allclose(deep.differential_entropy[:3], shallow.differential_entropy, rtol=1e-5)


def test_prefix_property_on_the_generic_path_too():
    deep, shallow = small(5, stacked=False), small(2, stacked=False)
    assert deep.path == "generic"
    np.testing.assert_allclose(deep.relative_entropy[:2], shallow.relative_entropy, rtol=1e-5, atol=1e-7)


def test_stacked_and_generic_paths_compute_the_same_probe():
    a, b = small(4, stacked=True), small(4, stacked=False)
    assert (a.path, b.path) == ("stacked", "generic")
    np.testing.assert_allclose(a.relative_entropy, b.relative_entropy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.decoder_loss, b.decoder_loss, rtol=1e-4)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b, c = small(3, seed=7), small(3, seed=7), small(3, seed=8)
    np.testing.assert_array_equal(a.relative_entropy, b.relative_entropy)
    assert not np.allclose(a.relative_entropy, c.relative_entropy)


def test_result_shapes_summary_and_partial_last_batch():
    r = small(3, batch_size=64, eval_samples=30)  # 300 = 4·64 + 44: the last batch is partial
    assert r.steps_run == 5 and r.relative_entropy.shape == (3, 30)
    s = r.summary()
    for k in ("relative_entropy_median", "relative_entropy_q25", "relative_entropy_norm_median",
              "differential_entropy", "decoder_loss"):
        assert len(s[k]) == 3
    # the summary reports the raw per-sample entropies it was given, and the cutoff of the result
    assert s["status"] == "ok" and s["cutoff"] == r.cutoff()
    np.testing.assert_allclose(s["relative_entropy_median"], np.median(r.relative_entropy, axis=1), rtol=1e-6)
    assert r.examples.shape == (4, 8, 64)  # input + 3 depths, 8 shown samples


def test_decoders_learn_something():
    one = small(2, epochs=1)
    three = small(2, epochs=3)
    assert (three.decoder_loss < one.decoder_loss).all()
    assert three.steps_run == 3 * one.steps_run


def test_diverging_network_is_a_status_not_a_crash():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 32, generator=g)
    body = mlp(100, 32, 32, "relu", 30.0, 0.0, seed=0)  # activations grow ~4x a layer: inf, then nan
    r = probe(body, x, x[:16], epochs=1)
    assert r.status == "diverged"


def test_bad_settings_raise_value_errors():
    x = torch.rand(10, 16)
    with pytest.raises(ValueError, match="batch_size"):
        probe(mlp(2, 16, 16), x, x, batch_size=0)
    with pytest.raises(ValueError, match="stacked"):
        probe(mlp(2, 8, 16), x, x, stacked=True)
    with pytest.raises(ValueError, match="depth"):
        mlp(0)


@pytest.mark.slow
def test_physics_ordered_cutoff_is_shallower_than_critical(mnist):
    """σ_w² = 0.5 is deep in the ordered phase; (1.76, 0.05) sits on the critical line (SCIENCE §6). One pass
    over mnist5k (63 steps) keeps the test short; the default budget (938 steps) moves both cutoffs deeper."""
    cut = {}
    for sw in (0.5, 1.76):
        body = mlp(20, 784, 784, "tanh", sw, 0.05, seed=0)
        cut[sw] = probe(body, mnist.train_x, mnist.test_x, epochs=1, eval_samples=200).cutoff()
    assert cut[0.5] + 5 <= cut[1.76], cut


def _state(body):
    """Everything about a body the caller could observe: values, requires_grad, device, mode."""
    return ([(n, p.detach().clone(), p.requires_grad, p.device) for n, p in body.named_parameters()],
            [m.training for m in body.modules()])


def _assert_same_state(before, after):
    (params0, modes0), (params1, modes1) = before, after
    assert [n for n, *_ in params0] == [n for n, *_ in params1]
    for (n, v0, g0, d0), (_, v1, g1, d1) in zip(params0, params1):
        torch.testing.assert_close(v1, v0, rtol=0, atol=0, msg=f"{n} changed")
        assert (g1, d1) == (g0, d0), n
    assert modes1 == modes0


@pytest.mark.parametrize("stacked", [True, False])
def test_probe_leaves_the_callers_body_as_it_was(stacked):
    """probe() freezes and moves a copy: the caller's body keeps its grads flag, mode and device."""
    body = mlp(3, 16, 16, "tanh", 1.76, 0.05, seed=0).train().requires_grad_(True)
    before = _state(body)
    x = torch.rand(64, 16, generator=torch.Generator().manual_seed(0))
    r = probe(body, x, x[:8], stacked=stacked)
    assert r.status == "ok"
    _assert_same_state(before, _state(body))
    assert all(p.requires_grad for p in body.parameters()) and body.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to see a device move")
def test_probe_on_cuda_leaves_the_callers_body_on_the_cpu():
    body = mlp(2, 16, 16, seed=0)
    before = _state(body)
    x = torch.rand(64, 16)
    probe(body, x, x[:8], device="cuda")
    _assert_same_state(before, _state(body))


def test_stack_adam_steps_exactly_as_torch_optim_adam():
    """The stacked loop's Adam (functional form, no torch._dynamo import) gives torch.optim.Adam's numbers."""
    from reconent.science.probe import _StackAdam

    g = torch.Generator().manual_seed(0)
    ours = [torch.randn(3, 5, 5, generator=g), torch.randn(3, 5, generator=g)]
    theirs = [p.clone().requires_grad_(True) for p in ours]
    opt, ref = _StackAdam(ours, 1e-2, torch.device("cpu")), torch.optim.Adam(theirs, lr=1e-2, fused=True)
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=g) for p in ours]
        for p, q, gr in zip(ours, theirs, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q.detach())

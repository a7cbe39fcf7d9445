"""The frozen fast path: while no parameter needs a gradient, weight-normalised kernels and folded batch norms are
computed once and reused; any change to the weights (in place, by ``load_state_dict``, an optimizer step, a dtype
change) is seen at once, and nothing of it reaches state dicts, pickles or ``requires_grad`` flags."""

from __future__ import annotations

import copy
import pickle
from unittest import mock

import pytest
import torch

from vaebm_hub import VAEBMVAE, LangevinScheduler, VAEBMEnergyModel, VAEBMPipeline
from vaebm_hub.models import layers
from vaebm_hub.models.layers import frozen, reference_kernels, set_channels_last
from vaebm_hub.pipelines.potential import potential_and_grad


def _networks():
    torch.manual_seed(0)
    vae = VAEBMVAE(in_channels=3, sample_size=16, num_latent_scales=2, num_groups_per_scale=2, num_nf=1)
    vae.readjust_batch_norm(2, 8, generator=torch.Generator().manual_seed(0))  # non-trivial BN statistics
    return vae.eval(), VAEBMEnergyModel(in_channels=3, sample_size=16).eval()


def _count_weight_normalisations():
    return mock.patch.object(layers, "normalize_weight", side_effect=layers.normalize_weight)


def _kernels_per_step(vae, ebm, eps) -> int:
    """How many weight-normalised kernels one potential evaluation uses (the encoder's are not used)."""
    with _count_weight_normalisations() as calls:
        potential_and_grad(vae, ebm, eps)
    assert calls.call_count > 10
    return calls.call_count


def _reference(vae, ebm, eps):
    with reference_kernels():  # the uncached eager formulas
        return potential_and_grad(vae, ebm, eps)


def _assert_close(fast, reference):
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_networks_normalise_each_kernel_once_and_match_the_eager_path():
    vae, ebm = _networks()
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(1))
    reference = _reference(vae, ebm, eps)
    kernels = _kernels_per_step(vae, ebm, eps)
    with _count_weight_normalisations() as unfrozen:
        potential_and_grad(vae, ebm, eps)
        potential_and_grad(vae, ebm, eps)
    assert unfrozen.call_count == 2 * kernels  # parameters require grad: every call recomputes
    with frozen(vae, ebm), _count_weight_normalisations() as calls:
        first = potential_and_grad(vae, ebm, eps)
        steps = [potential_and_grad(vae, ebm, eps) for _ in range(3)]
    assert calls.call_count == kernels  # once per kernel, not once per step
    _assert_close(first, reference)
    for step in steps:
        assert all(torch.equal(a, b) for a, b in zip(step, first))
    assert all(p.requires_grad for p in [*vae.parameters(), *ebm.parameters()])


def test_every_kind_of_weight_change_is_seen_at_once():
    vae, ebm = _networks()
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(1))
    with frozen(vae, ebm):
        before = potential_and_grad(vae, ebm, eps)
        with torch.no_grad():  # in place: a decoder BN (folded) and an EBM kernel (weight-normalised)
            vae.dec_tower[1]._ops[0].conv[0].bn.weight.mul_(1.5)
            ebm.conv1.log_weight_norm.add_(0.3)
        changed = potential_and_grad(vae, ebm, eps)
        _assert_close(changed, _reference(vae, ebm, eps))
        assert (changed[2] - before[2]).abs().min() > 1e-3  # the energies moved

        other_vae, other_ebm = _networks()
        with torch.no_grad():
            for p in [*other_vae.parameters(), *other_ebm.parameters()]:
                p.add_(0.01 * torch.randn_like(p))
        vae.load_state_dict(other_vae.state_dict())
        ebm.load_state_dict(other_ebm.state_dict())
        _assert_close(potential_and_grad(vae, ebm, eps), _reference(vae, ebm, eps))

        set_channels_last(vae)  # a layout switch re-lays the cached kernels out
        _assert_close(potential_and_grad(vae, ebm, eps), _reference(vae, ebm, eps))

    vae64, ebm64 = vae.double(), ebm.double()  # new tensors of another dtype
    with frozen(vae64, ebm64):
        out = potential_and_grad(vae64, ebm64, eps.double())
    assert out[0].dtype == torch.float64
    _assert_close(out, _reference(vae64, ebm64, eps.double()))


def test_an_optimizer_step_between_frozen_chains_is_seen():
    """Stage 2: the chain runs on a frozen EBM, then the EBM takes an optimizer step, then the next chain."""
    vae, ebm = _networks()
    vae.requires_grad_(False)
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(ebm.parameters(), lr=1e-2)
    for _ in range(2):
        with frozen(ebm):
            u, _, _ = potential_and_grad(vae, ebm, eps)
        _assert_close((u,), (_reference(vae, ebm, eps)[0],))
        loss = ebm(torch.rand(2, 3, 16, 16)).mean()  # parameters require grad again: an uncached forward
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_parameter_gradients_outside_frozen_are_those_of_the_uncached_formula():
    vae, ebm = _networks()
    x = torch.rand(2, 3, 16, 16)
    with frozen(ebm):
        ebm(x)  # fills the caches
    ebm.zero_grad()
    ebm(x).sum().backward()
    fast = {n: p.grad.clone() for n, p in ebm.named_parameters()}
    ebm.zero_grad()
    with reference_kernels():
        ebm(x).sum().backward()
    for n, p in ebm.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)


def test_frozen_restores_flags_after_an_error_and_caches_stay_out_of_saved_state():
    vae, ebm = _networks()
    ebm.linear.weight.requires_grad_(False)  # a user's own frozen parameter stays frozen
    with pytest.raises(RuntimeError, match="boom"), frozen(vae, ebm):
        assert not any(p.requires_grad for p in ebm.parameters())
        raise RuntimeError("boom")
    assert not ebm.linear.weight.requires_grad
    assert all(p.requires_grad for n, p in ebm.named_parameters() if n != "linear.weight")
    keys = set(ebm.state_dict())
    with frozen(ebm):
        ebm(torch.rand(2, 3, 16, 16))
    assert set(ebm.state_dict()) == keys
    x = torch.rand(2, 3, 16, 16)
    for clone in (copy.deepcopy(ebm), pickle.loads(pickle.dumps(ebm))):
        assert clone.conv1._frozen_weight._value is None
        with torch.no_grad():
            torch.testing.assert_close(clone(x), ebm(x))


def test_the_pipeline_samples_on_frozen_networks_and_leaves_them_trainable():
    vae, ebm = _networks()
    pipe = VAEBMPipeline(vae=vae, ebm=ebm, scheduler=LangevinScheduler(step_size=1e-3))
    pipe.set_progress_bar_config(disable=True)
    kernels = _kernels_per_step(vae, ebm, vae.sample_noise(2))
    with _count_weight_normalisations() as calls:
        fast = pipe(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert calls.call_count == kernels  # five steps and the final decode share one normalisation per kernel
    with reference_kernels():
        eager = pipe(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt")
    torch.testing.assert_close(fast.images, eager.images, rtol=1e-5, atol=1e-5)
    assert all(p.requires_grad for p in [*vae.parameters(), *ebm.parameters()])


def test_torch_compile_switch_runs_the_compiled_potential_and_switches_back():
    """The wiring of ``enable_torch_compile`` (a recording backend that runs the traced graphs as they are: no C++
    build; the inductor speed is measured in benchmarks/sampler.py)."""
    vae, ebm = _networks()
    pipe = VAEBMPipeline(vae=vae, ebm=ebm, scheduler=LangevinScheduler(step_size=1e-3))
    pipe.set_progress_bar_config(disable=True)

    def sample():
        return pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt")

    eager = sample().images
    traced = []
    pipe.enable_torch_compile(backend=lambda gm, inputs: traced.append(gm) or gm)
    compiled = sample().images
    assert traced  # the chain ran through torch.compile
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    pipe.disable_torch_compile()
    count = len(traced)
    torch.testing.assert_close(sample().images, eager)
    assert len(traced) == count
    torch._dynamo.reset()


def test_writes_through_data_between_calls_are_seen_and_no_kernel_outlives_its_block():
    """diffusers' ``EMAModel.copy_to`` writes ``param.data``, which torch's version counter does not see: kernels are
    therefore reused only within one frozen block (one sampling call), and dropped when it closes."""
    vae, ebm = _networks()
    eps = vae.sample_noise(3, generator=torch.Generator().manual_seed(1))
    with frozen(vae, ebm):
        potential_and_grad(vae, ebm, eps)
        assert ebm.conv1._frozen_weight._value is not None
    assert ebm.conv1._frozen_weight._value is None  # nothing held between calls
    with torch.no_grad():
        for p in [*vae.parameters(), *ebm.parameters()]:
            p.data.copy_(p.data * 1.01)  # as EMAModel.copy_to does
    with frozen(vae, ebm):
        _assert_close(potential_and_grad(vae, ebm, eps), _reference(vae, ebm, eps))

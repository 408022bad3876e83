"""Hypernetwork head: Bias-HyperInit, the factored W(e)h, gradients, running normalisation."""

import math

import numpy as np
import pytest
import torch as th

from metarl_agents.heads import HyperHead, HyperLinear, MlpHead, RunningNorm


@pytest.mark.parametrize("discrete", [True, False])
def test_bias_hyperinit_generated_networks_ignore_the_latent(discrete):
    th.manual_seed(0)
    head = HyperHead(obs_dim=5, latent_dim=24, action_dim=3, discrete=discrete)
    s = th.randn(6, 5)
    out_a, value_a = head(s, th.randn(6, 24))
    out_b, value_b = head(s, 10 * th.randn(6, 24))
    th.testing.assert_close(out_a, out_b)
    th.testing.assert_close(value_a, value_b)
    assert value_a.shape == (6,) and out_a.shape == (6, 3)


def test_bias_hyperinit_values():
    th.manual_seed(0)
    head = HyperHead(obs_dim=5, latent_dim=24, action_dim=4, discrete=True)
    for layer in [*head.actor, *head.critic]:
        assert th.all(layer.matrices[:-1] == 0) and th.all(layer.bias[:-1] == 0)  # the heads' W = 0
    for net in (head.actor, head.critic):
        for hidden in net[:-1]:  # hidden base layers: rows of norm 5/3, zero bias
            th.testing.assert_close(hidden.matrices[-1].norm(dim=1), th.full((hidden.out_features,), 5 / 3))
            assert th.all(hidden.bias[-1] == 0)
    actor_out = head.actor[-1].matrices[-1]  # orthogonal, gain 0.01 (rows orthonormal x 0.01)
    th.testing.assert_close(actor_out @ actor_out.t(), 1e-4 * th.eye(4), atol=1e-9, rtol=0)
    critic_bias = head.critic[-1].bias[-1]
    assert critic_bias.abs().max() <= 1 / math.sqrt(128) and critic_bias.abs().max() > 0
    gaussian = HyperHead(obs_dim=5, latent_dim=24, action_dim=2, discrete=False)
    th.testing.assert_close(gaussian.actor[-1].matrices[-1].norm(dim=1), th.ones(2))


def _materialised(layer: HyperLinear, h: th.Tensor, e1: th.Tensor) -> th.Tensor:
    weights = th.einsum("koi,nk->noi", layer.matrices, e1)  # per-sample W(e)
    return th.einsum("noi,ni->no", weights, h) + e1 @ layer.bias


def test_hyperlinear_equals_materialised_weights_and_passes_gradcheck():
    th.manual_seed(0)
    layer = HyperLinear(3, th.randn(5, 4), th.randn(5)).double()
    with th.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    h = th.randn(7, 4, dtype=th.float64, requires_grad=True)
    e1 = th.cat([th.randn(7, 3, dtype=th.float64), th.ones(7, 1, dtype=th.float64)], 1).requires_grad_()
    th.testing.assert_close(layer(h, e1), _materialised(layer, h, e1))
    assert th.autograd.gradcheck(layer, (h, e1))


def test_hypernetwork_depends_on_latent_after_training_step():
    th.manual_seed(0)
    head = HyperHead(obs_dim=3, latent_dim=4, action_dim=2, discrete=True, state_dim=8, hidden=(8, 4))
    s, latent = th.randn(16, 3), th.randn(16, 4)
    loss = head(s, latent)[0].pow(2).sum() + head(s, latent)[1].pow(2).sum()
    loss.backward()
    assert head.actor[0].weight.grad[:, :-1].abs().sum() > 0  # the hypernetwork heads do learn
    with th.no_grad():
        for p in head.parameters():
            p.add_(0.1 * th.randn_like(p))
    assert not th.allclose(head(s, latent)[0], head(s, -latent)[0])


def test_mlp_head_uses_the_latent():
    th.manual_seed(0)
    head = MlpHead(obs_dim=3, latent_dim=4, action_dim=2, discrete=False, net_arch=(8, 4))
    s = th.randn(5, 3)
    out, value = head(s, th.randn(5, 4))
    assert out.shape == (5, 2) and value.shape == (5,)
    assert not th.allclose(head(s, th.randn(5, 4))[1], value)


def test_running_norm_matches_numpy():
    norm = RunningNorm(3)
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, size=(n, 3)) for n in (5, 17, 40)]
    for batch in batches:
        norm.update(th.as_tensor(batch, dtype=th.float32))
    data = np.concatenate(batches)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-3)
    x = th.as_tensor(data[:4], dtype=th.float32)
    expected = (data[:4] - norm.mean.numpy()) / np.sqrt(norm.var.numpy() + 1e-8)
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert norm(th.full((1, 3), 1e6)).max() == 10.0  # clipped


def test_bf16_autocast_head_is_close_to_float32_and_keeps_float32_parameters_and_gradients():
    th.manual_seed(0)
    head = HyperHead(obs_dim=5, latent_dim=24, action_dim=4, discrete=True)
    with th.no_grad():
        for p in head.parameters():
            p.add_(0.05 * th.randn_like(p))  # make the outputs depend on the latent
    s, z = th.randn(32, 5), th.randn(32, 24)
    full = head(s, z)
    head.autocast_bf16 = True
    half = head(s, z)
    for a, b in zip(full, half, strict=True):
        assert b.dtype == th.float32 and not th.equal(a, b)  # the products did run in bfloat16
        th.testing.assert_close(b, a, rtol=0.05, atol=0.05)  # bfloat16 keeps 8 bits of mantissa
    (half[0].sum() + half[1].sum()).backward()
    assert all(p.grad.dtype == th.float32 and th.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_bf16_is_refused_for_the_plain_head():
    import gymnasium as gym

    from metarl_agents.policies import SplAggerPolicy
    from metarl_envs.wrappers import TransitionObservation

    env = TransitionObservation(gym.make("MetaTMaze-v0"))
    with pytest.raises(ValueError, match="head_bf16=True applies to the hypernetwork head only"):
        SplAggerPolicy(env.observation_space, env.action_space, lambda _: 1e-3, head="mlp", head_bf16=True)
    policy = SplAggerPolicy(env.observation_space, env.action_space, lambda _: 1e-3, head_bf16=True)
    assert policy.head.autocast_bf16

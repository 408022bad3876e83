"""Our Cheetah BO-MRL against the authors' released functions, on the same policy and the same trajectories.

    python benchmarks/bomrl_mujoco/compare_authors.py --authors PATH/Bilevel-optimization-MRL/BOMRL_my \
        [--task dir] [--alg 2] [--seed 0] [--tasks 4] [--json out.json]

``--authors`` is a folder of the authors' public BO-MRL code (their ``BOMRL_my``: ``train_trpo_HalfCheetah_*.py``,
``trpo.py``, ``models.py``, ``utils.py``, ``replay_memory.py``, ``running_state.py``); it is imported, never
shipped. Their training script builds a ``gym`` env and parses ``sys.argv`` when imported; this script gives it
a stand-in ``gym`` (only the two space shapes are read) and its own argument list, so nothing of theirs runs
except the pure-torch functions called below. Their module makes float64 torch's default type, as their runs did.

One task batch is collected once with our batched collector (our env, our paper protocol in float64); both sides
then work on exactly those trajectories, the authors' through their ``Memory`` transitions:

1. ``Q``: their ``compute_adavatage`` (continuation return) against our return-to-go;
2. ``theta'``: their ``task_specific_adaptation`` (50 Adam steps, ``D^2 > 3`` break) against our ``solve_lower``;
3. ``H v`` at the same ``theta'`` (a random ``v``), of their ``kl_divergence + loss_obain_new / lambda``
   against our ``lower_loss``;
4. ``g``: their ``policy_gradient_obain`` (gradient of ``-J``) against our ``policy_gradient`` on the same
   post-adaptation trajectories;
5. ``x``: their ``conjugate_gradients`` (10 steps, no damping) against our ``conjugate_gradient``;
6. ``h``: the gradient of their meta-loss (``-<grad_theta KL, x>`` averaged over tasks, built on their
   ``kl_divergence``) against the gradient of our meta-objective;
7. the meta-step: their ``trpo_step`` against our ``trpo_step`` from the same ``phi`` and hypergradient.

Every comparison prints the relative difference ``|a - b| / |b|`` and the cosine. Our float32 variant of
steps 2-6 on the same data shows what float64 buys.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

from metarl_agents.bomrl.mujoco_protocol import CheetahMetaLearner, CheetahProtocol
from metarl_agents.bomrl.neural import _gaussian_kl, conjugate_gradient

#: Their ``Policy``'s parameter names and ours for the same tensors (their flat vectors follow their
#: ``parameters()`` order, which puts ``action_log_std`` first: see :func:`their_order`).
PARAMETER_MAP = [("affine1.weight", "policy.mlp_extractor.policy_net.0.weight"),
                 ("affine1.bias", "policy.mlp_extractor.policy_net.0.bias"),
                 ("affine2.weight", "policy.mlp_extractor.policy_net.2.weight"),
                 ("affine2.bias", "policy.mlp_extractor.policy_net.2.bias"),
                 ("action_mean.weight", "policy.action_net.weight"),
                 ("action_mean.bias", "policy.action_net.bias"),
                 ("action_log_std", "policy.log_std")]


def import_authors(folder: Path, task: str, alg: int) -> types.ModuleType:
    """Their training module for ``task``, imported with a stand-in ``gym`` and its own ``sys.argv``."""
    if not (folder / f"train_trpo_HalfCheetah_{task}.py").exists():
        raise SystemExit(f"{folder} has no train_trpo_HalfCheetah_{task}.py: pass the authors' BOMRL_my folder")
    space = types.SimpleNamespace
    fake_env = space(observation_space=space(shape=(17,)), action_space=space(shape=(6,)))
    sys.modules.setdefault("gym", types.SimpleNamespace(make=lambda *a, **k: fake_env))
    if importlib.util.find_spec("scipy") is None:  # imported there, never used
        scipy = types.ModuleType("scipy")
        scipy.optimize = types.ModuleType("scipy.optimize")
        sys.modules.update({"scipy": scipy, "scipy.optimize": scipy.optimize})
    sys.path.insert(0, str(folder))
    argv, sys.argv = sys.argv, ["authors", "--index", str(alg)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            module = importlib.import_module(f"train_trpo_HalfCheetah_{task}")
    finally:
        sys.argv = argv
    return module


def their_order(module) -> list[str]:
    """Our names in the order of their ``Policy.parameters()`` (the order of their flat vectors)."""
    ours = dict(PARAMETER_MAP)
    return [ours[name] for name, _ in module.Policy(17, 6).named_parameters()]


def their_policy(module, params: dict[str, torch.Tensor]):
    """Their ``Policy`` holding our parameter values."""
    policy = module.Policy(17, 6)
    named = dict(policy.named_parameters())
    with torch.no_grad():
        for theirs, ours in PARAMETER_MAP:
            named[theirs].copy_(params[ours].reshape(named[theirs].shape))
    return policy


def our_params(policy) -> dict[str, torch.Tensor]:
    named = dict(policy.named_parameters())
    return {ours: named[theirs].detach().clone().reshape(-1) if theirs == "action_log_std" else named[theirs].detach().clone()
            for theirs, ours in PARAMETER_MAP}


ORDER: list[str] = []  # set by main(): their_order(module)


def flat_ours(tensors, names) -> torch.Tensor:
    """A list in our parameter order, flattened in the authors' order."""
    by_name = dict(zip(names, tensors, strict=True))
    return torch.cat([by_name[ours].reshape(-1).double() for ours in ORDER])


def solve(hvp, b, iterations: int, damping: float, protocol: CheetahProtocol | None = None) -> list[torch.Tensor]:
    """Our ``conjugate_gradient``'s solution (a list of tensors, or the ``x`` of the object it returns),
    with the protocol's extra damping settings where it has them."""
    extra = {}
    if protocol is not None and hasattr(protocol, "cg_relative_damping"):
        extra = {"relative_damping": protocol.cg_relative_damping, "power_iterations": protocol.power_iterations}
    result = conjugate_gradient(hvp, b, iterations, damping, **extra)
    return list(getattr(result, "x", result))


def compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.double().reshape(-1), b.double().reshape(-1)
    return {"relative_difference": float((a - b).norm() / b.norm().clamp_min(1e-300)),
            "cosine": float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))}


def transitions(module, rollouts, g: int, horizon: int):
    """Task ``g``'s trajectories as their ``Memory`` samples: the horizon part and the continuation part."""
    n = rollouts.obs.shape[1]
    main, extra = module.Memory(), module.Memory()
    zeros = np.zeros(rollouts.obs.shape[-1])
    for i in range(n):
        for t in range(horizon):
            main.push(rollouts.obs[g, i, t].numpy(), rollouts.actions[g, i, t].numpy()[None], i, zeros,
                      float(rollouts.rewards[g, i, t]))
        for t in range(horizon, rollouts.rewards.shape[-1]):
            extra.push(zeros, np.zeros((1, 6)), i, zeros, float(rollouts.rewards[g, i, t]))
    return main.sample(), extra.sample()


def hvp_theirs(module, theta_policy, meta_policy, batch, q, lam: float, alg: int):
    """``v -> H v`` of their lower-level objective at ``theta_policy`` (double backward)."""
    objective = module.kl_divergence(meta_policy, theta_policy, batch, alg) + module.loss_obain_new(
        theta_policy, meta_policy, batch, q) / lam
    grads = torch.autograd.grad(objective, list(theta_policy.parameters()), create_graph=True)
    flat = torch.cat([t.reshape(-1) for t in grads])
    return lambda v: torch.cat([t.reshape(-1) for t in torch.autograd.grad(
        flat @ v, list(theta_policy.parameters()), retain_graph=True)]).detach()


def their_meta_loss(module, meta_policy, theta_policies, batches, xs, alg: int):
    """Their task-averaged meta-loss ``-<grad_theta KL(phi, theta)|theta', x>`` as a function of ``meta_policy``."""

    def loss(*_):
        total = 0.0
        for theta_policy, batch, x in zip(theta_policies, batches, xs, strict=True):
            kl = module.kl_divergence(meta_policy, theta_policy, batch, alg)
            grads = torch.autograd.grad(kl, list(theta_policy.parameters()), create_graph=True)
            total = total - torch.cat([t.reshape(-1) for t in grads]) @ x / len(xs)
        return total

    return loss


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", type=Path, required=True, help="the authors' BOMRL_my folder")
    parser.add_argument("--task", choices=["dir", "vel"], default="dir")
    parser.add_argument("--alg", type=int, choices=[1, 2, 3], default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=4, help="tasks in the batch (the meta-step uses all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    module = import_authors(args.authors.resolve(), args.task, args.alg)
    ORDER[:] = their_order(module)
    torch.manual_seed(args.seed)

    protocol = CheetahProtocol(task=args.task, method=f"alg{args.alg}", tasks_per_iteration=args.tasks, dtype="float64")
    learner = CheetahMetaLearner(protocol, seed=args.seed)
    learner.warm_up_normalizer()
    agent, names, p = learner.agent, learner.names, learner.protocol
    phi = agent.phi()
    tasks = learner.sample_tasks()
    pre = learner.collect([phi] * len(tasks), tasks, p.n_trajectories)
    report: dict = {"task": args.task, "alg": args.alg, "seed": args.seed, "tasks": tasks[:, 0].tolist(), "per_task": []}
    thetas, post_batches, batches, their_batches, their_thetas, their_xs, our_xs = [], [], [], [], [], [], []
    float32 = CheetahMetaLearner(CheetahProtocol(task=args.task, method=f"alg{args.alg}", dtype="float32"), seed=args.seed)
    for g in range(len(tasks)):
        row: dict = {}
        batch = learner.batch(pre, g, phi)
        their_batch, their_extra = transitions(module, pre, g, p.horizon)
        q_theirs = module.compute_adavatage(their_batch, their_extra, p.n_trajectories).reshape(-1)
        row["Q"] = compare(q_theirs, torch.as_tensor(pre.q_values[g].reshape(-1)))
        q_centred = (q_theirs - q_theirs.mean()).reshape(-1, 1)

        # 2. the lower level from the same phi on the same data
        theta = agent.solve_lower(phi, batch)
        with contextlib.redirect_stdout(io.StringIO()):
            theta_theirs = module.task_specific_adaptation(their_policy(module, phi), their_policy(module, phi),
                                                           their_batch, q_centred, p.lam, args.alg)
        row["theta_prime"] = compare(flat_ours(list(our_params(theta_theirs).values()), list(our_params(theta_theirs))),
                                     flat_ours([theta[k] for k in names], names))
        row["theta_prime_step"] = compare(
            flat_ours([our_params(theta_theirs)[k] - phi[k] for k in names], names),
            flat_ours([theta[k] - phi[k] for k in names], names))
        row["D2_ours"] = float(agent.divergence(theta, phi, batch.obs))

        # 3.-5. at our theta' on both sides
        theta_policy, meta_policy = their_policy(module, theta), their_policy(module, phi)
        hvp = hvp_theirs(module, theta_policy, meta_policy, their_batch, q_centred, p.lam, args.alg)
        th = {k: theta[k].clone().requires_grad_(True) for k in names}
        grad_L = torch.autograd.grad(agent.lower_loss(th, phi, batch), [th[k] for k in names], create_graph=True)

        def our_hvp(v, grad_L=grad_L, th=th):
            return list(torch.autograd.grad(grad_L, [th[k] for k in names], v, retain_graph=True))

        v = torch.randn(sum(t.numel() for t in phi.values()), dtype=torch.float64)
        v_ours, offset = {}, 0
        for ours in ORDER:
            v_ours[ours] = v[offset: offset + phi[ours].numel()].reshape(phi[ours].shape)
            offset += phi[ours].numel()
        row["Hv"] = compare(hvp(v), flat_ours(our_hvp([v_ours[k] for k in names]), names))

        post = learner.collect([theta], tasks[g: g + 1], p.post_trajectories)
        post_batch = learner.batch(post, 0, theta)
        their_post, their_post_extra = transitions(module, post, 0, p.horizon)
        q_post = module.compute_adavatage(their_post, their_post_extra, p.post_trajectories)
        q_post = q_post - q_post.mean()
        for param in theta_policy.parameters():  # their routine zeroes existing gradients
            param.grad = torch.zeros_like(param)
        _, minus_g = module.policy_gradient_obain(theta_policy, their_post, q_post)
        g_theirs = -torch.cat([t.reshape(-1) for t in minus_g])
        g_ours = agent.policy_gradient(theta, post_batch)
        row["g"] = compare(g_theirs, flat_ours(g_ours, names))
        g_ours_by_name = dict(zip(names, g_ours, strict=True))
        x_theirs = -module.conjugate_gradients(hvp, -g_theirs, p.cg_iterations)
        x_ours = solve(our_hvp, g_ours, p.cg_iterations, p.cg_damping, p)
        x_undamped = solve(our_hvp, g_ours, p.cg_iterations, 0.0)
        row["x_damped_ours_vs_theirs"] = compare(flat_ours(x_ours, names), x_theirs)
        row["x_undamped_ours_vs_theirs"] = compare(flat_ours(x_undamped, names), x_theirs)
        row["x_vs_g_cosine_theirs"] = compare(x_theirs, g_theirs)["cosine"]

        # float32 on the same data: theta', H v, g, x against float64
        phi32 = {k: t.float() for k, t in phi.items()}
        b32 = type(batch)(batch.obs.float(), batch.actions.float(), batch.advantages.float(), batch.log_prob.float(),
                          batch.episode_returns)
        theta32 = float32.agent.solve_lower(phi32, b32)
        row["float32_theta_prime_step"] = compare(flat_ours([theta32[k] - phi32[k] for k in names], names),
                                                  flat_ours([theta[k] - phi[k] for k in names], names))
        th32 = {k: theta[k].float().requires_grad_(True) for k in names}
        grad32 = torch.autograd.grad(float32.agent.lower_loss(th32, phi32, b32), [th32[k] for k in names], create_graph=True)

        def hvp32(w, grad32=grad32, th32=th32):
            return list(torch.autograd.grad(grad32, [th32[k] for k in names], w, retain_graph=True))

        row["float32_Hv"] = compare(flat_ours(hvp32([v_ours[k].float() for k in names]), names),
                                    flat_ours(our_hvp([v_ours[k] for k in names]), names))
        x32 = solve(hvp32, [g_ours_by_name[k].float() for k in names], p.cg_iterations, p.cg_damping, p)
        row["float32_x"] = compare(flat_ours(x32, names), flat_ours(x_ours, names))
        report["per_task"].append(row)

        thetas.append(theta)
        batches.append(batch)
        post_batches.append(post_batch)
        their_batches.append(their_batch)
        their_thetas.append(their_policy(module, theta))
        their_xs.append(-x_theirs)  # their x solves with the gradient of -J
        our_xs.append(-flat_ours(x_ours, names))

    # 6. the hypergradient h, 7. the TRPO meta-step (theirs: no damping, no KL check in the line search)
    objective = learner._bomrl_objective(phi, thetas, batches, post_batches)
    objective = objective[0] if isinstance(objective, tuple) else objective  # (objective, diagnostics, ...)
    ph = {k: t.clone().requires_grad_(True) for k, t in phi.items()}
    h_ours = list(torch.autograd.grad(objective(ph), [ph[k] for k in names]))
    meta_policy = their_policy(module, phi)
    loss = their_meta_loss(module, meta_policy, their_thetas, their_batches, their_xs, args.alg)
    h_theirs = -torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss(), list(meta_policy.parameters()))])
    report["h_ours_vs_theirs_each_with_own_x"] = compare(flat_ours(h_ours, names), h_theirs)
    same_x = their_meta_loss(module, meta_policy, their_thetas, their_batches, our_xs, args.alg)
    h_same_x = -torch.cat([t.reshape(-1) for t in torch.autograd.grad(same_x(), list(meta_policy.parameters()))])
    report["h_ours_vs_theirs_same_x"] = compare(flat_ours(h_ours, names), h_same_x)

    states = torch.cat([b.obs for b in batches])
    their_states = states.clone()
    mean0, log_std0, std0 = (t.detach() for t in meta_policy(their_states))

    def their_kl():
        mean1, log_std1, std1 = meta_policy(their_states)
        return (log_std1 - log_std0 + (std0.pow(2) + (mean0 - mean1).pow(2)) / (2.0 * std1.pow(2)) - 0.5).sum(1, keepdim=True)

    with contextlib.redirect_stdout(io.StringIO()) as log:
        module.trpo_step(meta_policy, loss, their_kl, p.max_kl, 0.0)
    phi_theirs = our_params(meta_policy)
    step = learner.trpo_step(phi, h_ours, objective, states)
    kl_ours, improvement = step.kl, step.improvement
    phi_ours = agent.phi()
    report["meta_step"] = {
        "step_ours_vs_theirs": compare(flat_ours([phi_ours[k] - phi[k] for k in names], names),
                                       flat_ours([phi_theirs[k] - phi[k] for k in names], names)),
        "kl_ours": kl_ours, "improvement_ours": improvement,
        "kl_theirs": float(_gaussian_kl(*agent.distribution(phi, states), *agent.distribution(phi_theirs, states)).mean()),
        "their_line_search_log": log.getvalue().strip().splitlines()[-3:],
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    learner.close()
    float32.close()
    return report


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()

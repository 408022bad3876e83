"""BO-MRL (Xu & Zhu, NeurIPS 2024): bilevel meta-RL with universal policy adaptation.

Tabular (exact, for Frozen Lake): :class:`TabularBOMRL` and the functions of
:mod:`metarl_agents.bomrl.tabular`. Neural (a wrapper around an SB3 actor-critic policy):
:class:`metarl_agents.bomrl.neural.BOMRL`, imported lazily so the tabular part stays light. The paper's
MuJoCo protocol (BO-MRL and MAML-TRPO on Cheetah-Vel/Dir, batched): :mod:`metarl_agents.bomrl.mujoco_protocol`,
run by ``python -m metarl_agents.bomrl.cheetah``.
"""

from metarl_agents.bomrl.mdp import TabularMDP, evaluate, sampled_evaluation, value_iteration
from metarl_agents.bomrl.tabular import TabularBOMRL, adapt, hypergradient, maml_step, solve_lower
from metarl_agents.lazy import lazy_attributes

__all__ = [
    "BOMRL", "TabularBOMRL", "TabularMDP", "adapt", "evaluate", "hypergradient", "maml_step",
    "sampled_evaluation", "solve_lower", "value_iteration",
]

__getattr__ = lazy_attributes(__name__, {"BOMRL": ".neural"})

"""``--conf-file metarl_agents.zoo.ppo_lstm``: the hyperparameters of ``ppo_lstm.yml`` for RL Baselines3 Zoo."""

from metarl_agents.zoo import load_config

hyperparams = load_config("ppo_lstm")

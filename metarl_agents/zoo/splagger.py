"""``--conf-file metarl_agents.zoo.splagger``: the hyperparameters of ``splagger.yml`` for RL Baselines3 Zoo."""

from metarl_agents.zoo import load_config

hyperparams = load_config("splagger")

"""Meta-RL task families as Gymnasium environments.

``import metarl_envs`` registers every id below; ``gymnasium.make("MetaTMaze-v0")`` opens one
trial-per-episode env and ``gymnasium.make_vec("MetaTMaze-v0", num_envs=N)`` the native batched
vector env.
"""

from gymnasium.envs.registration import register

__version__ = "0.1.0"

# id -> (module, class stem, kwargs, max_episode_steps, batched)
_IDS = {
    "MetaTMaze-v0": ("tmaze", "MetaTMaze", {"episodes_per_trial": 4}, 604, True),
    "MetaTMazeLongShort-v0": ("tmaze", "MetaTMazeLongShort", {"episodes_per_trial": 4}, 604, True),
    "MetaTMazeAgreement-v0": ("tmaze", "MetaTMazeAgreement", {"episodes_per_trial": 4}, 604, True),
    "MetaTMazeLatent-v0": ("tmaze", "MetaTMazeLatent", {"episodes_per_trial": 4}, 604, True),
    "MetaMinecraftLongShort-v0": ("minecraft", "MetaMinecraftLongShort", {"episodes_per_trial": 2}, 400, True),
    "MetaPlanningGame-v0": ("planning", "MetaPlanningGame", {"size": 3}, 100, True),
    "MetaPlanningGame4x4-v0": ("planning", "MetaPlanningGame", {"size": 4}, 100, True),
    "MetaPlanningGameJustGoal-v0": ("planning", "MetaPlanningGame", {"size": 3, "observation": "at_goal"}, 100, True),
    "MetaCheetahDir-v0": ("cheetah", "MetaCheetahDir", {}, 200, True),
    "MetaCheetahVel-v0": ("cheetah", "MetaCheetahVel", {}, 200, True),
    "MetaFrozenLake-v0": ("frozen_lake", "MetaFrozenLake", {}, 49, True),
    "MetaFrozenLakePenalty-v0": ("frozen_lake", "MetaFrozenLakePenalty", {}, 49, True),
}

for _id, (_module, _stem, _kwargs, _steps, _batched) in _IDS.items():
    register(
        id=_id,
        entry_point=f"metarl_envs.{_module}:{_stem}Env",
        vector_entry_point=f"metarl_envs.{_module}:{_stem}VectorEnv" if _batched else None,
        max_episode_steps=_steps,
        kwargs=_kwargs,
    )

REGISTERED_IDS = tuple(_IDS)

"""Meta-RL task families as Gymnasium environments.

``import metarl_envs`` registers every id below; ``gymnasium.make("MetaTMaze-v0")`` opens one
trial-per-episode env and ``gymnasium.make_vec("MetaTMaze-v0", num_envs=N)`` the native batched
vector env. Registering imports no family module (each id names its env class and core by path).

An id is a family's env class, the core of the variant (the ``core`` kwarg, one of that family's cores)
and default kwargs. No id registers a ``TimeLimit``: a trial ends by itself after ``episodes_per_trial``
episodes, so ``gymnasium.make(id, episodes_per_trial=8)`` runs 8 episodes per trial and
``env.spec.max_episode_steps`` is the bound that follows from the env's own kwargs.

So the registry's ``gymnasium.spec(id).max_episode_steps`` is ``None``: Gymnasium would wrap every env of
an id that registered one in a ``TimeLimit`` of that many steps, which cuts a trial of more episodes short.
Read the bound from a made env instead, ``gymnasium.make(id, **kwargs).spec.max_episode_steps`` (or
``env.unwrapped.max_trial_steps``): 604 for ``MetaTMaze-v0``. The vector envs refuse a
``max_episode_steps`` kwarg for the same reason.
"""

from gymnasium.envs.registration import register

__version__ = "0.1.0"

# family -> (env class, vector env class), as "module:Class" under metarl_envs
_FAMILIES = {
    "tmaze": ("tmaze:MetaTMazeEnv", "core:MetaVectorEnv"),
    "minecraft": ("minecraft:MetaMinecraftLongShortEnv", "core:MetaVectorEnv"),
    "planning": ("planning:MetaPlanningGameEnv", "core:MetaVectorEnv"),
    "cheetah": ("cheetah:MetaCheetahEnv", "cheetah:MetaCheetahVectorEnv"),
    "frozen_lake": ("frozen_lake:MetaFrozenLakeEnv", "core:MetaVectorEnv"),
    "point_nav": ("point_nav:MetaPointNav2DEnv", "core:MetaVectorEnv"),
}
# id -> (family, core class in the family's module, default kwargs)
_IDS = {
    "MetaTMaze-v0": ("tmaze", "TMazeCore", {"episodes_per_trial": 4}),
    "MetaTMazeLongShort-v0": ("tmaze", "LongShortCore", {"episodes_per_trial": 4}),
    "MetaTMazeAgreement-v0": ("tmaze", "AgreementCore", {"episodes_per_trial": 4}),
    "MetaTMazeLatent-v0": ("tmaze", "LatentCore", {"episodes_per_trial": 4}),
    "MetaMinecraftLongShort-v0": ("minecraft", "MinecraftCore", {"episodes_per_trial": 2}),
    "MetaPlanningGame-v0": ("planning", "PlanningCore", {"size": 3}),
    "MetaPlanningGame4x4-v0": ("planning", "PlanningCore", {"size": 4}),
    "MetaPlanningGameJustGoal-v0": ("planning", "PlanningCore", {"size": 3, "observation": "at_goal"}),
    "MetaCheetahDir-v0": ("cheetah", "CheetahDirCore", {}),
    "MetaCheetahVel-v0": ("cheetah", "CheetahVelCore", {}),
    "MetaFrozenLake-v0": ("frozen_lake", "FrozenLakeCore", {}),
    "MetaFrozenLakePenalty-v0": ("frozen_lake", "PenaltyCore", {}),
    "MetaPointNav2D-v0": ("point_nav", "PointNavCore", {}),
}

for _id, (_family, _core, _kwargs) in _IDS.items():
    _env, _vector = _FAMILIES[_family]
    register(
        id=_id,
        entry_point=f"metarl_envs.{_env}",
        vector_entry_point=f"metarl_envs.{_vector}",
        kwargs={"core": f"metarl_envs.{_family}:{_core}", **_kwargs},
    )

REGISTERED_IDS = tuple(_IDS)

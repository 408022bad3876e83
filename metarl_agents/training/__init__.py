"""The training layer: run configuration and presets, the SB3 VecEnv bridge, MetaPPO and its rollout
buffer, and meta-evaluation. Data flows env id -> :mod:`.vec_env` -> :mod:`.ppo` -> :mod:`.evaluation`."""

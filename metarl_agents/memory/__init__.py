"""The memory layer: sequence primitives (:mod:`.sequence`), aggregators (:mod:`.aggregators`), scan
encoders (:mod:`.encoders`) and the configurable memory itself (:mod:`.core`)."""

from metarl_agents.memory.core import ENCODERS, Memory, TransitionEmbedding

__all__ = ["ENCODERS", "Memory", "TransitionEmbedding"]

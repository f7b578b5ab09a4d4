"""``pinpad_v0``: the cooperative gridworld-pinpad in PettingZoo's module convention.

``parallel_env(**kwargs)`` is the native :class:`PinpadParallelEnv`; ``env(**kwargs)`` is
its AEC form (PettingZoo's ``parallel_to_aec``: agents act in turn, the board moves once
all have acted). The keyword arguments are :class:`PinpadParallelEnv`'s.
"""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv
from pettingzoo.utils.conversions import parallel_to_aec

from hier_envs.multiagent.env import PinpadParallelEnv


def parallel_env(**kwargs: Any) -> PinpadParallelEnv:
    """The multi-agent pinpad as a PettingZoo ``ParallelEnv``."""
    return PinpadParallelEnv(**kwargs)


def env(**kwargs: Any) -> AECEnv:
    """The multi-agent pinpad as a PettingZoo AEC env (order-enforced)."""
    return parallel_to_aec(parallel_env(**kwargs))

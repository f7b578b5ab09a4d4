"""Observation wrappers for the pinpad envs.

* :class:`GridImageObservation`: HierGrid-v0's one-hot as a ``(size, size, channels)``
  image (or channel-first), for convolutional policies.
* :class:`AntDictObservation`: HierAnt-v0's flat vector split into named parts. The
  plain observation is already a flat ``Box``, so ``FlattenObservation`` needs no help;
  on this wrapper it gives back exactly the env's vector.
"""

from __future__ import annotations

from collections import OrderedDict

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hier_envs.grid.env import HierGridEnv


class GridImageObservation(gym.ObservationWrapper):
    """HierGrid-v0's observation as an image: ``Box(0, 1, (size, size, C), uint8)``.

    ``C = num_walls + num_colors + 1``: channel ``c`` of pixel ``(row, col)`` is feature
    ``c`` of that cell (walls, colours, agent). ``channels_first=True`` gives
    ``(C, size, size)``, PyTorch's layout. Values stay 0/1, not 0..255.
    """

    def __init__(self, env: gym.Env, channels_first: bool = False) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, HierGridEnv):
            raise ValueError(
                f"GridImageObservation wraps HierGrid-v0 envs, got {type(base).__name__}."
            )
        size, channels = base.config.size, base.config.num_features
        self.channels_first = channels_first
        self._grid_shape = (size, size, channels)
        shape = (channels, size, size) if channels_first else self._grid_shape
        self.observation_space = spaces.Box(0, 1, shape, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        image = observation.reshape(self._grid_shape)
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.channels_first else image


class AntDictObservation(gym.ObservationWrapper):
    """HierAnt-v0's observation as a ``Dict`` of its parts, in the vector's order.

    ``proprio`` (27: symlog of ``qpos`` without xy, then ``qvel``), ``xy`` (2, torso
    position scaled to [-1, 1]), ``colours`` (``(num_colors, 2)`` offsets from the torso
    to each coloured cell), ``walls`` (``(num_walls, 2)``; absent without walls) and
    ``in_cell`` (2, the torso's position within its cell). Bounds are the env's.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        from hier_envs.ant.env import PROPRIO_SIZE, HierAntEnv  # MuJoCo only for ant users

        base = env.unwrapped
        if not isinstance(base, HierAntEnv):
            raise ValueError(
                f"AntDictObservation wraps HierAnt-v0 envs, got {type(base).__name__}."
            )
        config = base.config
        parts = [
            ("proprio", (PROPRIO_SIZE,)),
            ("xy", (2,)),
            ("colours", (config.num_colors, 2)),
            ("walls", (config.num_walls, 2)),
            ("in_cell", (2,)),
        ]
        box = env.observation_space
        self._slices: OrderedDict[str, tuple[slice, tuple[int, ...]]] = OrderedDict()
        part_spaces = OrderedDict()
        start = 0
        for name, shape in parts:
            stop = start + int(np.prod(shape))
            if stop > start:
                self._slices[name] = (slice(start, stop), shape)
                low, high = box.low[start:stop], box.high[start:stop]
                part_spaces[name] = spaces.Box(
                    low.reshape(shape), high.reshape(shape), shape, np.float32
                )
            start = stop
        assert start == box.shape[0], "the parts must cover the observation"
        self.observation_space = spaces.Dict(part_spaces)  # an OrderedDict keeps this order

    def observation(self, observation: np.ndarray) -> OrderedDict[str, np.ndarray]:
        return OrderedDict(
            (name, observation[where].reshape(shape))
            for name, (where, shape) in self._slices.items()
        )

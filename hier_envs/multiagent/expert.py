"""The multi-agent pinpad's expert: the next colours handed out to the closest agents.

Each step, the distinct colours the task requires next are assigned in task order, each
to the closest agent not yet assigned (by exact shortest path; ties to the lowest agent
index). The agent given the next colour takes a shortest-path move onto it; the agent
given a later colour walks to a cell beside it and waits there; agents without a colour
stay. Paths cross only empty cells, so no agent ever steps onto a wrong colour, and the
closest distance to the next colour falls by one every step: the team completes the task
in at most as many steps as agent 0 alone would, hence always within ``max_steps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hier_envs.grid.core import UNREACHABLE, shortest_path
from hier_envs.multiagent.env import STAY, PinpadParallelEnv


class TeamExpert:
    """Expert for a :class:`PinpadParallelEnv` (or its AEC form); reads the env's state."""

    def __init__(self, env: PinpadParallelEnv, seed: int | None = None) -> None:
        self.env = env
        self.rng = np.random.default_rng(seed)

    def act(
        self,
        observations: dict[str, np.ndarray] | None = None,
        infos: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, int]:
        """One action per agent; uniform over a moving agent's shortest-path moves.

        With the AEC env, call it at each agent's turn and take that agent's entry: the
        board does not change until every agent has acted.
        """
        env = self.env
        if env.layout is None or not env.agents:
            raise RuntimeError("Reset the env before asking the expert for an action.")
        layout, geometry = env.layout, env.config.geometry
        empty = geometry.full ^ layout.occupied
        actions = [STAY] * len(env.cells)
        unassigned = list(range(len(env.cells)))
        for rank, colour in enumerate(self._upcoming_colours()):
            target = 1 << layout.colours[colour]
            paths = {
                i: shortest_path(1 << env.cells[i], target, empty, geometry) for i in unassigned
            }
            agent = min(unassigned, key=lambda i: paths[i][0])
            unassigned.remove(agent)
            distance, next_cells = paths[agent]
            if distance >= UNREACHABLE or (rank > 0 and distance == 1):
                continue  # a later colour's agent waits beside it
            moves = geometry.move_lists[env.cells[agent]]
            options = [a for a in range(len(moves)) if (next_cells >> moves[a]) & 1]
            actions[agent] = options[self.rng.integers(len(options))]
        return {name: int(action) for name, action in zip(env.possible_agents, actions)}

    def _upcoming_colours(self) -> list[int]:
        """The distinct colours still to visit, in task order, at most one per agent."""
        env = self.env
        upcoming: list[int] = []
        for colour in env.layout.task[env.progress :]:
            if colour not in upcoming:
                upcoming.append(colour)
            if len(upcoming) == len(env.cells):
                break
        return upcoming

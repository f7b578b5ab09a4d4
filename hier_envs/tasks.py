"""Task lists of the paper (Kobayashi et al., 2025, arXiv 2512.20605).

A task is a tuple of colour ids to visit in order. In the gridworld the abstract
subgoals are colour pairs: A = (0, 1), B = (2, 3), C = (4, 5), D = (6, 7).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

GRID_SUBGOALS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7))
"""The gridworld's abstract subgoals A..D, as colour pairs."""

GRID_PRETRAINING: tuple[tuple[int, ...], ...] = (
    (0, 1, 4, 5, 0, 1),
    (0, 1, 4, 5, 2, 3),
    (0, 1, 6, 7, 2, 3),
    (2, 3, 0, 1, 4, 5),
    (2, 3, 6, 7, 2, 3),
    (2, 3, 6, 7, 4, 5),
    (4, 5, 0, 1, 4, 5),
    (4, 5, 0, 1, 6, 7),
    (4, 5, 2, 3, 6, 7),
    (6, 7, 2, 3, 0, 1),
    (6, 7, 2, 3, 6, 7),
    (6, 7, 4, 5, 0, 1),
    (0, 1, 6, 7, 4, 5),
    (2, 3, 0, 1, 6, 7),
    (4, 5, 2, 3, 0, 1),
    (6, 7, 4, 5, 2, 3),
)
"""The 16 gridworld pretraining tasks (A-C-A, A-C-B, ...): six colours each."""

GRID_POST_TRAINING: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3)
"""The gridworld post-training task A-B-C-D-A-B: its subgoal transitions are unseen."""

ANT_PRETRAINING: tuple[tuple[int, ...], ...] = (
    (0, 3, 2),
    (1, 0, 3),
    (2, 1, 0),
    (3, 2, 1),
    (0, 2, 0),
    (0, 2, 1),
    (0, 3, 1),
    (1, 0, 2),
    (1, 3, 1),
    (1, 3, 2),
    (2, 0, 2),
    (2, 0, 3),
    (2, 1, 3),
    (3, 1, 0),
    (3, 1, 3),
    (3, 2, 0),
)
"""The 16 ant-pinpad pretraining tasks: three colours each."""

ANT_POST_TRAINING: tuple[int, ...] = (0, 1, 2, 3)
"""The ant-pinpad post-training task: the transition 0 -> 1 never occurs in pretraining."""


def resolve_tasks(
    task: str | Sequence[int],
    num_colors: int,
    pretraining: tuple[tuple[int, ...], ...],
    post_training: tuple[int, ...],
) -> tuple[tuple[int, ...], ...]:
    """Turn a ``task`` keyword into the tuple of tasks that reset samples from.

    ``"post"`` is the post-training task, ``"pretrain"`` the pretraining tasks (one
    drawn at each reset), and a sequence of colour ids is that one task.
    Raises ``ValueError`` naming what is wrong and what is allowed.
    """
    if isinstance(task, str):
        named = {"post": (post_training,), "pretrain": pretraining}
        if task not in named:
            raise ValueError(
                f"Unknown task {task!r}: use 'post', 'pretrain' or a sequence of colour ids "
                f"in [0, {num_colors})."
            )
        tasks = named[task]
    else:
        tasks = (_colour_sequence(task, num_colors),)
    highest = max(max(t) for t in tasks)
    if highest >= num_colors:
        raise ValueError(
            f"Task {task!r} uses colour {highest}, but num_colors={num_colors} "
            f"allows only colour ids 0..{num_colors - 1}."
        )
    return tasks


def _colour_sequence(task: object, num_colors: int) -> tuple[int, ...]:
    try:
        items = list(task)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(
            f"task must be 'post', 'pretrain' or a sequence of colour ids, got {task!r}."
        ) from None
    if not items:
        raise ValueError("task is empty: give at least one colour id.")
    colours = []
    for item in items:
        if isinstance(item, bool | np.bool_):
            raise ValueError(f"Colour ids must be integers, got the boolean {item!r} in {task!r}.")
        try:
            colour = operator.index(item)
        except TypeError:
            raise ValueError(
                f"Colour ids must be integers in [0, {num_colors}), got {item!r} in {task!r}."
            ) from None
        if colour < 0:
            raise ValueError(f"Colour ids must be in [0, {num_colors}), got {colour} in {task!r}.")
        colours.append(colour)
    return tuple(colours)

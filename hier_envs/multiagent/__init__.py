"""Multi-agent pinpad: the cooperative gridworld-pinpad for PettingZoo.

from hier_envs.multiagent import pinpad_v0

env = pinpad_v0.parallel_env(num_agents=2, task="pretrain")   # ParallelEnv
env = pinpad_v0.env(num_agents=2)                              # AEC (parallel_to_aec)
"""

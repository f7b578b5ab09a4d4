"""Data files that hier-envs needs at run time (installed as ``hier_envs.assets``)."""

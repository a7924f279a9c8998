"""RLCS (GLM-4.1V report): GRPO-style policy optimisation with curriculum sampling over difficulty tiers, dynamic
sampling with a fixed budget (expansion ratio EMA), forced answering, and rewards from `train.rewards`."""

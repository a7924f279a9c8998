"""vlmdata's verifiers as verl's custom reward function, for the Parquet that `vlmdata export --format verl` writes:

    custom_reward_function.path=$(python -c "import train.rewards.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` once per response; each exported row
carries its verifier's domain in `extra_info["domain"]`. Responses are scored in warm worker processes under a
hard timeout (a response that hangs a verifier scores 0), as in vlmdata's own RLCS loop.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from train.rewards.pool import RewardPool

TIMEOUT_S = float(os.environ.get("VLMDATA_REWARD_TIMEOUT_S", "10"))
_pool: RewardPool | None = None


def _scorer() -> RewardPool:
    global _pool
    if _pool is None:
        _pool = RewardPool(workers=1, timeout_s=TIMEOUT_S, chunk_size=1)
        _pool.__enter__()
        atexit.register(_pool.__exit__, None, None, None)
    return _pool


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None,
                  **_: Any) -> float:
    """The score in [0, 1] of one response against its row's ground truth, by the row's domain's verifier."""
    domain = (extra_info or {}).get("domain")
    if not domain:
        raise ValueError(f"a row of {data_source!r} has no extra_info['domain']: export it with `vlmdata export "
                         "--format verl` (which records each prompt's verifier domain)")
    return float(_scorer().score([(domain, solution_str, ground_truth)])[0].score)

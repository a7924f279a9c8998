"""stats.json carries every numeric sample field the shard writer histogrammed, and pooled match rates."""

import json

from pipelines.shard_stats import ShardStats
from pipelines.stats import RunStats


def test_numeric_fields_and_pooled_rates_reach_the_run_stats():
    shard = ShardStats()
    for i, (cer, checked, matched) in enumerate([(0.0, 10, 9), (0.1, 5, 1), (0.3, None, None)]):
        fields = {"cer": cer, "caption": f"c{i}"}
        if checked is not None:
            fields["gui_ocr"] = {"checked": checked, "matched": matched}
        shard.add({"__key__": f"k{i}", "txt": b"t", "json": json.dumps(fields).encode()})
    run = RunStats()
    run.add_shards(shard)
    merged = RunStats(run.to_dict()).merge(RunStats(run.to_dict()))
    out = merged.to_dict()
    assert out["fields"]["cer"]["n"] == 6 and abs(out["fields"]["cer"]["max"] - 0.3) < 1e-9
    assert out["rates"] == {"gui_ocr.match_rate": round(20 / 30, 4)}

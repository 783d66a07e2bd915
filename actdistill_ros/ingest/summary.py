"""The ingest summary: what was used, what was dropped and why, so a user can trust the dataset.

Layout (``ingest_summary.json`` next to ``dataset.json``)::

    bags_used        [path]                      bags that produced data
    skipped_bags     [{bag, reason}]             unreadable/inconsistent bags, not used at all
    episodes, steps  totals of the saved dataset
    episode_details  [{bag, instruction, steps, start_ns, end_ns}]
    topics           {topic: {count, rate_hz}}   over all used bags
    dropped_messages {topic: {reason: count}}    e.g. non_finite, bad_quaternion, empty_instruction
    out_of_order     {topic: count}              messages stamped earlier than one already seen
    dropped_short_episodes [{bag, instruction, steps, start_ns, reason}]
    per_bag          {path: {topics, ticks, ticks_dropped_gap, episodes, steps, ...}}
    stamps           how stamps were chosen; config; cache {hit, key}
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import write_json_atomic

SUMMARY_FILE = "ingest_summary.json"
STAMP_POLICY = (
    "header.stamp when the message has a header with a non-zero stamp (use_header_stamps), "
    "else the bag receive time; each topic is sorted by stamp, out-of-order messages are counted"
)


def topic_stats(
    msgtype: str, stamps: np.ndarray, raw_count: int, header_count: int, dropped: Counter, out_of_order: int
) -> dict[str, Any]:
    """Count and rate (over the kept, sorted stamps) of one topic in one bag."""
    rate = 0.0
    if len(stamps) > 1 and stamps[-1] > stamps[0]:
        rate = (len(stamps) - 1) / ((int(stamps[-1]) - int(stamps[0])) * 1e-9)
    if raw_count == 0:
        source = "none"
    elif header_count == raw_count:
        source = "header"
    elif header_count == 0:
        source = "receive"
    else:
        source = "mixed"
    return {
        "type": msgtype,
        "count": int(raw_count),
        "kept": int(len(stamps)),
        "rate_hz": round(rate, 3),
        "stamp_source": source,
        "first_ns": int(stamps[0]) if len(stamps) else None,
        "last_ns": int(stamps[-1]) if len(stamps) else None,
        "out_of_order": int(out_of_order),
        "dropped": dict(dropped),
    }


def aggregate(per_bag: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over bags: topic counts/rates, dropped messages, out-of-order counts."""
    topics: dict[str, dict[str, Any]] = {}
    dropped: dict[str, Counter] = {}
    out_of_order: Counter = Counter()
    for bag in per_bag.values():
        for topic, st in bag.get("topics", {}).items():
            agg = topics.setdefault(topic, {"count": 0, "kept": 0, "rate_hz_per_bag": []})
            agg["count"] += st["count"]
            agg["kept"] += st["kept"]
            agg["rate_hz_per_bag"].append(st["rate_hz"])
            if st["dropped"]:
                dropped.setdefault(topic, Counter()).update(st["dropped"])
            if st["out_of_order"]:
                out_of_order[topic] += st["out_of_order"]
    for agg in topics.values():
        rates = agg.pop("rate_hz_per_bag")
        agg["rate_hz"] = round(float(np.mean(rates)), 3) if rates else 0.0
    return {
        "topics": topics,
        "dropped_messages": {t: dict(c) for t, c in dropped.items()},
        "out_of_order": dict(out_of_order),
    }


def write_summary(summary: dict[str, Any], directory: Path) -> Path:
    return write_json_atomic(Path(directory) / SUMMARY_FILE, summary, default=str)

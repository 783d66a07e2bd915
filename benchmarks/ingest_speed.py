"""Ingest speed: decoded images per second through the bag reader, single process, one core.

Writes sqlite3 and mcap bags of N 640x480 frames (raw rgb8 Image and JPEG CompressedImage) with
``rosbags``, then times, per bag:

* ``read``     -- raw message bytes only (storage cost);
* ``decode``   -- read + deserialize + decode to RGB uint8 at 640x480;
* ``resize``   -- the above + ``resize_rgb`` to --size (what the dataset stores);
* ``ingest``   -- the full ``ingest()`` (two passes, alignment, npz save), per image in the bag.

    python benchmarks/ingest_speed.py --frames 500 --json /tmp/ingest_speed.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))  # demo_bags: the synthetic bag writer the tests use

from actdistill_ros.ingest import IngestConfig, decode_image, ingest, open_bag, resize_rgb  # noqa: E402

from demo_bags import DemoTopics, write_demo_bag  # noqa: E402


def time_reader(bag_path: Path, topic: str, size: tuple[int, int] | None, decode: bool) -> tuple[int, float]:
    bag = open_bag(bag_path)
    try:
        n = 0
        start = time.perf_counter()
        for _topic, _recv, raw, msgtype in bag.messages([topic]):
            if decode:
                rgb = decode_image(bag.deserialize(raw, msgtype), topic=topic, bag=str(bag_path))
                if size is not None:
                    resize_rgb(rgb, size)
            n += 1
        return n, time.perf_counter() - start
    finally:
        bag.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the bags (default: temp)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # per-core numbers
    size = tuple(args.size)
    topics = DemoTopics()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ingest_speed_"))
    rows = []
    try:
        for storage in ("sqlite3", "mcap"):
            for fmt in ("rgb8", "jpeg"):
                path = workdir / f"{storage}_{fmt}"
                shutil.rmtree(path, ignore_errors=True)
                t = time.perf_counter()
                write_demo_bag(
                    path,
                    storage,
                    num_frames=args.frames,
                    image_rate_hz=30.0,
                    action_rate_hz=30.0,
                    image_size=(480, 640),
                    image_format=fmt,
                )
                write_s = time.perf_counter() - t
                row = {"storage": storage, "format": fmt, "frames": args.frames, "write_s": round(write_s, 3)}
                time_reader(path, topics.image, None, False)  # warm the page cache
                for name, sz, dec in (("read", None, False), ("decode", None, True), ("resize", size, True)):
                    n, secs = time_reader(path, topics.image, sz, dec)
                    row[f"{name}_img_per_s"] = round(n / secs, 1)
                cfg = IngestConfig(
                    bags=path,
                    image_topic=topics.image,
                    action_topic=topics.action,
                    instruction_topic=topics.instruction,
                    control_rate_hz=30.0,
                    image_size=size,
                    min_episode_steps=1,
                )
                t = time.perf_counter()
                result = ingest(cfg, workdir / f"out_{storage}_{fmt}")
                secs = time.perf_counter() - t
                row["ingest_img_per_s"] = round(args.frames / secs, 1)
                row["ingest_steps"] = result.summary["steps"]
                rows.append(row)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    cols = ["storage", "format", "read_img_per_s", "decode_img_per_s", "resize_img_per_s", "ingest_img_per_s"]
    print(f"{args.frames} frames 640x480, resize to {size[0]}x{size[1]}, 1 core (images/s)")
    print(" | ".join(f"{c:>17}" for c in cols))
    for row in rows:
        print(" | ".join(f"{row[c]!s:>17}" for c in cols))
    if args.json:
        args.json.write_text(
            json.dumps({"frames": args.frames, "size": list(size), "results": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

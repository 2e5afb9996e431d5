"""Pack FER-2013 Training + PublicTest (never PrivateTest) for a lent GPU machine, under its 64 MiB transfer limit.

Pixels are stored as horizontal differences (PNG's "Sub" filter) and LZMA-compressed, which is lossless and
much smaller than the gzipped CSV. FER+ soft targets travel with it. Usage:

    .venv/bin/python tools/pack_fer_for_device.py ../shared/data/fer2013 .device/fer_trainval.npz
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from emotionlab.data.ferplus import attach_ferplus, load_ferplus
from emotionlab.data.fer2013 import load_fer2013
from emotionlab.data.loader import pack_dataset


def main(src: str, dst: str) -> None:
    src_p = Path(src)
    ds = load_fer2013(src_p / "fer2013.csv.gz")
    attach_ferplus(ds, load_ferplus(src_p / "fer2013new.csv"))
    keep = np.flatnonzero(ds.usage != "PrivateTest")
    sub = ds.subset(keep)
    pack_dataset(sub, dst)
    print(f"{dst}: {Path(dst).stat().st_size / 2**20:.1f} MiB, {len(sub)} rows (no PrivateTest)")


if __name__ == "__main__":
    main(*sys.argv[1:3])

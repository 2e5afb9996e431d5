"""How shipped face models hold up beyond clean FER crops: corruptions and the full photo path.

    .venv/bin/python benchmarks/robustness.py --models default,fast [--data FER.csv.gz] [--split PrivateTest]
        [--corruptions all] [--photo] [--json out/robustness.json] [--md out/robustness.md] [--threads 1]
    .venv/bin/python benchmarks/robustness.py --write-photos DIR --tilt 30 --limit 1500   (a photo folder for
        `emotionlab evaluate --data DIR --detect [--align]`)

Why: real users' faces are not 48x48 FER crops. Every model sees the same corrupted crops
(``emotionlab.explain.corruptions``: low resolution, blur, JPEG, noise, exposure, contrast, tilt) through the
same ONNX Runtime path as ``predict``. ``--photo`` also measures the photo path end to end: each test face,
upscaled to 160 px, is placed in a 640x480 frame (border replicated, so no hard edge), found by the face
detector, cropped by the pipeline's own ``crop_face`` and classified; a face the detector misses counts as an
error. The label set stays FER-2013's, so this measures robustness, not accuracy on another population.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


from emotionlab.data.paths import default_fer2013_csv  # noqa: E402  (the one default-data rule)


def photo_frames(crops: np.ndarray, face_px: int = 160, frame=(480, 640)) -> list[np.ndarray]:
    """Each crop upscaled to ``face_px`` and centred in a BGR frame whose rest replicates the crop's border."""
    import cv2

    fh, fw = frame
    out = []
    for c in crops:
        face = cv2.resize(c, (face_px, face_px), interpolation=cv2.INTER_CUBIC)
        top, left = (fh - face_px) // 2, (fw - face_px) // 2
        gray = cv2.copyMakeBorder(face, top, fh - face_px - top, left, fw - face_px - left, cv2.BORDER_REPLICATE)
        out.append(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))  # detectors take camera frames (BGR)
    return out


def _tilt(crops: np.ndarray, degrees: float) -> np.ndarray:
    """Each crop turned by ``degrees``, left or right at random (the ``tilt_*`` corruption at any angle)."""
    from emotionlab.explain.corruptions import rotation

    return rotation(crops, degrees)


def main(argv: list[str] | None = None) -> int:
    from emotionlab.data.loader import eval_split, load_dataset
    from emotionlab.data.preprocess import prepare_faces
    from emotionlab.explain.corruptions import CORRUPTIONS, corrupt
    from emotionlab.inference.detectors import create_detector
    from emotionlab.inference.recognizer import FaceEmotionRecognizer
    from emotionlab.training.metrics import classification_metrics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default,fast")
    ap.add_argument("--data", default=str(default_fer2013_csv()))
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--corruptions", default="all", help="comma list or 'all'")
    ap.add_argument("--photo", action="store_true", help="also run the detector photo path")
    ap.add_argument("--align-study", default="", metavar="DEGREES",
                    help="photo path with the head tilted by each of these degrees (e.g. 0,15,30), cropped "
                         "upright and roll-aligned from the detector's eye keypoints")
    ap.add_argument("--write-photos", type=Path, default=None, metavar="DIR",
                    help="write the test faces as photos (640x480 frames, turned by --tilt) into DIR/<label>/ and "
                         "stop: a photo folder for `emotionlab evaluate --detect [--align]`")
    ap.add_argument("--tilt", type=float, default=0.0, help="head tilt in degrees for --write-photos")
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="first N faces only (quick looks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)

    names = list(CORRUPTIONS) if args.corruptions == "all" else args.corruptions.split(",")
    for n in names:
        if n not in CORRUPTIONS:
            ap.error(f"unknown corruption {n!r}; known: {', '.join(CORRUPTIONS)}")
    part = eval_split(load_dataset(args.data, size=48, label_set="fer7"), args.split)
    images, labels = part.images, part.labels
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    if args.write_photos:
        import cv2

        from emotionlab.data.labels import get_label_set

        names7 = get_label_set("fer7").labels
        tilted = images if args.tilt == 0 else _tilt(images, args.tilt)
        for lo in range(0, len(labels), 256):
            for j, fr in enumerate(photo_frames(tilted[lo:lo + 256])):
                d = args.write_photos / names7[labels[lo + j]]
                d.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / f"{lo + j:05d}.jpg"), fr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        print(f"wrote {len(labels)} photos (tilt {args.tilt:g}°) to {args.write_photos}")
        return 0
    models = {m: FaceEmotionRecognizer(m, detector=args.detector, backend="onnx", threads=args.threads)
              for m in args.models.split(",")}
    rows: dict[str, dict] = {}
    clean_probs: dict[str, np.ndarray] = {}
    for n in names:
        x = corrupt(images, n)
        rows[n] = {"description": CORRUPTIONS[n][1], "models": {}}
        for m, rec in models.items():
            probs = rec.classify_crops(x)
            if n == "clean":
                clean_probs[m] = probs
            met = classification_metrics(labels, probs.argmax(1), rec.labels)
            rows[n]["models"][m] = {"accuracy": met["accuracy"], "macro_f1": met["macro_f1"], "n": met["n"]}
        print(n, {m: round(v["accuracy"], 4) for m, v in rows[n]["models"].items()}, flush=True)
    if args.photo:
        det = create_detector(args.detector, threads=args.threads)
        frames = photo_frames(images)
        t0 = time.perf_counter()
        boxes = []
        for fr in frames:
            ds = det.detect(fr)
            boxes.append(max(ds, key=lambda d: d.box[2] * d.box[3]).box if ds else None)
        det_ms = (time.perf_counter() - t0) * 1000 / max(len(frames), 1)
        found = np.array([b is not None for b in boxes])
        rows["photo"] = {"description": f"face upscaled to 160 px in a 640x480 frame, detector {args.detector!r} "
                                        f"(found {found.mean():.1%} of faces, {det_ms:.1f} ms/frame), "
                                        "pipeline crop; a missed face counts as an error",
                         "detected": float(found.mean()), "models": {}}
        for m, rec in models.items():
            pred = np.full(len(labels), -1)
            idx = np.flatnonzero(found)
            if len(idx):
                xs = np.concatenate([prepare_faces(frames[i], [boxes[i]], rec.pre)[0] for i in idx])
                pred[idx] = rec.classify(xs).argmax(1)
            ok = pred >= 0
            met = (classification_metrics(labels[ok], pred[ok], rec.labels) if ok.any()
                   else {"accuracy": 0.0, "macro_f1": 0.0})  # the detector found none of the faces
            # the same detected faces as dataset crops: the gap is what the pipeline's own crop costs
            cp = clean_probs[m][idx] if m in clean_probs else rec.classify_crops(images[idx])
            same = float((cp.argmax(1) == labels[idx]).mean()) if len(idx) else 0.0
            rows["photo"]["models"][m] = {"accuracy": float((pred == labels).mean()),
                                          "accuracy_detected": met["accuracy"], "macro_f1": met["macro_f1"],
                                          "accuracy_detected_dataset_crop": same, "n": int(len(labels))}
        print("photo", {m: (round(v["accuracy"], 4), round(v["accuracy_detected"], 4),
                            round(v["accuracy_detected_dataset_crop"], 4))
                        for m, v in rows["photo"]["models"].items()}, f"detected {found.mean():.3f}", flush=True)

    if args.align_study:
        det = create_detector(args.detector, threads=args.threads)
        from emotionlab.data.preprocess import eye_roll
        study = rows.setdefault("align_study", {"description": "photo path, head tilted; upright vs roll-aligned "
                                                               "crop (a missed face counts as an error)",
                                                "tilts": {}})
        for deg in (float(d) for d in args.align_study.split(",")):
            tilted = images if deg == 0 else _tilt(images, deg)
            found = np.zeros(len(labels), bool)
            pred = {(m, mode): np.full(len(labels), -1) for m in models for mode in ("upright", "aligned")}
            for lo in range(0, len(labels), 256):  # 256 frames at a time: ~240 MB, not 3.3 GB per tilt
                frames = photo_frames(tilted[lo:lo + 256])
                for j, fr in enumerate(frames):
                    ds = det.detect(fr)
                    if not ds:
                        continue
                    d = max(ds, key=lambda d: d.box[2] * d.box[3])
                    found[lo + j] = True
                    for m, rec in models.items():
                        for mode in ("upright", "aligned"):
                            roll = [eye_roll(d.landmarks)] if mode == "aligned" else None
                            x = prepare_faces(fr, [d.box], rec.pre, roll)[0]
                            pred[(m, mode)][lo + j] = int(rec.classify(x).argmax(1)[0])
            cell: dict = {"detected": float(found.mean()),
                          "models": {m: {mode: float((pred[(m, mode)] == labels).mean())
                                         for mode in ("upright", "aligned")} for m in models}}
            study["tilts"][f"{deg:g}"] = cell
            print("align", deg, cell, flush=True)

    clean = rows.get("clean", {}).get("models", {})
    corrupted = [n for n in names if n != "clean"]
    mean = {m: float(np.mean([rows[n]["models"][m]["accuracy"] for n in corrupted])) for m in models} \
        if corrupted else {}
    result = {"data": args.data, "split": args.split, "n": int(len(labels)), "date": time.strftime("%Y-%m-%d"),
              "models": {m: rec.model_name for m, rec in models.items()}, "rows": rows,
              "mean_corrupted_accuracy": mean}
    hdr = "| condition | " + " | ".join(f"{m} ({models[m].model_name})" for m in models) + " |"
    lines = [hdr, "|---|" + "---:|" * len(models)]
    for n, r in rows.items():
        if n == "align_study":
            continue
        cells = []
        for m in models:
            a = r["models"][m]["accuracy"]
            d = f" ({100 * (a - clean[m]['accuracy']):+.1f})" if clean and n != "clean" else ""
            cells.append(f"{100 * a:.1f} %{d}")
        lines.append(f"| `{n}`: {r['description']} | " + " | ".join(cells) + " |")
    if mean:
        lines.append("| mean of the corruptions | " + " | ".join(f"{100 * mean[m]:.1f} %" for m in models) + " |")
    if "photo" in rows:
        ph = rows["photo"]["models"]
        lines.append("| `photo`, detected faces only: pipeline crop vs dataset crop | " + " | ".join(
            f"{100 * ph[m]['accuracy_detected']:.1f} % vs {100 * ph[m]['accuracy_detected_dataset_crop']:.1f} %"
            for m in models) + " |")
    if "align_study" in rows:
        lines += ["", "| head tilt (photo path) | detected | " + " | ".join(
            f"{m}: upright crop | {m}: roll-aligned crop" for m in models) + " |",
                  "|---|---:|" + "---:|---:|" * len(models)]
        for deg, cell in rows["align_study"]["tilts"].items():
            lines.append(f"| {deg}° | {100 * cell['detected']:.1f} % | " + " | ".join(
                f"{100 * cell['models'][m]['upright']:.1f} % | {100 * cell['models'][m]['aligned']:.1f} %"
                for m in models) + " |")
    md = "\n".join(lines)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

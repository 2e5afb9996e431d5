"""The results leaderboard (``docs/RESULTS.md``), generated from the model cards and the benchmarks' JSON.

Why generated: a hand-kept results page drifts from the models that ship. As timm writes its results tables from
its benchmark CSVs, every number here is read from a model card (the package's shipped cards, and the cards of
retired models kept as records under ``docs/model_cards/retired/``) or from a small JSON record of a benchmark
run under ``docs/results/`` (title, command, machine, date, tables). Each row names its command and its date.

    python -m emotionlab.models.leaderboard --out docs/RESULTS.md    # write it
    python -m emotionlab.models.leaderboard --check docs/RESULTS.md  # exit 1 if it is out of date

Cards are read as plain dicts, so this module needs nothing beyond the standard library.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

#: the package's shipped face models (cards + aliases) and text models
FACE_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
TEXT_WEIGHTS = Path(__file__).resolve().parent.parent / "text" / "weights"
#: what a row's command reads, spelled once above the tables
DATA_VARS = ("FER=../shared/data/fer2013/fer2013.csv.gz; FERPLUS=../shared/data/fer2013/fer2013new.csv; "
             "UTK=../shared/data/utkface")
#: data paths as the cards spell them -> the variables above (shorter rows, one spelling)
_DATA_PATHS = ((re.compile(r"\S*shared/data/fer2013/fer2013\.csv\.gz"), "$FER"),
               (re.compile(r"\S*shared/data/fer2013/fer2013new\.csv"), "$FERPLUS"),
               (re.compile(r"\S*shared/data/utkface"), "$UTK"))
#: how to get a retired model's weights back (the commit before they left the package)
RETIRED_AT = "e4f66f4"


def _read_json(p: Path) -> dict:
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: not readable JSON ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{p}: expected a JSON object")
    return d


def _cards(directory: Path) -> dict[str, dict]:
    """name -> card for every model card in a folder (not aliases.json)."""
    if not directory.is_dir():
        return {}
    return {p.stem: _read_json(p) for p in sorted(directory.glob("*.json")) if p.name != "aliases.json"}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _f3(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _acc(m: dict, key: str, field: str = "accuracy"):
    v = m.get(key)
    return v.get(field) if isinstance(v, dict) else None


def _table(columns: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    out = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(columns))) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in cells]


def _status(name: str, aliases: dict[str, str], shipped: dict[str, dict], members: set[str]) -> str:
    names = [f"**`{a}`**" for a, n in sorted(aliases.items()) if n == name]
    if names:
        return "shipped " + ", ".join(names)
    if name in members:
        return "shipped, member of `default`"
    quant = [a for a, n in aliases.items() if shipped.get(n, {}).get("quantized_from") == name]
    if quant:
        return f"shipped, float source of `{quant[0]}`"
    if name in shipped:
        return "shipped"
    return f"retired ({RETIRED_AT})"


def _eval_cmd(name: str, card: dict, *, tta: bool = True) -> str:
    if card.get("label_set") == "gender2":
        return f"emotionlab evaluate --model {name} --data $UTK"
    extra = " --ferplus $FERPLUS" if card.get("label_set") == "ferplus8" else ""
    return f"emotionlab evaluate --model {name} --data $FER{extra} --split PrivateTest" + (" --tta flip" if tta else "")


#: release steps moved from ``emotionlab models`` to ``emotionlab maintain``; cards keep the name that was run
_MOVED = re.compile(r"\bemotionlab models (ship|quantize|tune-bias|ensemble|last-epoch)\b")


def _short(cmd: str) -> str:
    """A card's command as a row shows it: data paths as variables, no free-text ``--notes``, and release steps
    under the name a user types today (``maintain``; the card keeps the name that was run)."""
    cmd = re.sub(r" --notes '[^']*'", "", cmd.removeprefix(".venv/bin/"))
    cmd = _MOVED.sub(r"emotionlab maintain \1", cmd)
    for pat, var in _DATA_PATHS:
        cmd = pat.sub(var, cmd)
    return cmd


def _train_cmd(card: dict) -> str:
    return _short(_made_by(card))


def _made_by(card: dict) -> str:
    t = card.get("training") or {}
    if card.get("arch") == "ensemble":
        refs = " ".join(m["model"] for m in card.get("members", []))
        ws = " ".join(f"--weight {m.get('weight', 1)}" for m in card.get("members", []))
        return f"emotionlab maintain ensemble {refs} {ws}"
    if card.get("quantized_from"):
        rep = card.get("reproduce") or []
        return rep[0] if rep else f"emotionlab maintain quantize {card['quantized_from']}"
    return t.get("command") or "–"


def _sections(docs: Path) -> dict:
    aliases = _read_json(FACE_WEIGHTS / "aliases.json") if (FACE_WEIGHTS / "aliases.json").exists() else {}
    shipped = _cards(FACE_WEIGHTS)
    retired = _cards(docs / "model_cards" / "retired")
    members = {m["model"] for c in shipped.values() if c.get("arch") == "ensemble" for m in c.get("members", [])}
    return {"aliases": aliases, "shipped": shipped, "retired": retired, "members": members,
            "text": _cards(TEXT_WEIGHTS), "results": _cards(docs / "results")}


def _shipped_table(s: dict) -> list[str]:
    rows = []
    order = sorted(s["shipped"], key=lambda n: (n not in s["aliases"].values(), n))
    for name in order:
        c = s["shipped"][name]
        rows.append([f"`{name}`", _status(name, s["aliases"], s["shipped"], s["members"]), c.get("arch", "?"),
                     f"{c.get('params', 0):,}", f"{c.get('mflops', 0):.1f}", c.get("label_set", "?"),
                     c.get("shipped", "–"), f"`{_train_cmd(c)}`"])
    return _table(["model", "status", "arch", "params", "MFLOPs", "labels", "shipped", "made by (last step)"],
                  rows, {3, 4})


def _face_rows(s: dict, label_set: str) -> list[tuple[str, dict, str]]:
    both = [(n, c, _status(n, s["aliases"], s["shipped"], s["members"])) for n, c in s["shipped"].items()]
    both += [(n, c, _status(n, s["aliases"], s["shipped"], s["members"])) for n, c in s["retired"].items()
             if n not in s["shipped"]]
    rows = [r for r in both if r[1].get("label_set") == label_set and "PrivateTest" in (r[1].get("metrics") or {})]
    return sorted(rows, key=lambda r: -(_acc(r[1]["metrics"], "PrivateTest") or 0))


def _fer_table(s: dict) -> list[str]:
    rows = []
    for name, c, status in _face_rows(s, "fer7"):
        m = c["metrics"]
        rob = m.get("PrivateTest@robustness") or {}
        rows.append([f"`{name}`", status, f"{c.get('params', 0):,}", _pct(_acc(m, "PrivateTest")),
                     _pct(_acc(m, "PrivateTest+tta_flip")), _f3(_acc(m, "PrivateTest+tta_flip", "macro_f1")),
                     _pct(_acc(m, "PublicTest")), _pct(_acc(m, "PrivateTest@FER+majority")),
                     _pct(rob.get("mean_corrupted")), m.get("evaluated", "–"), f"`{_eval_cmd(name, c)}`"])
    return _table(["model", "status", "params", "PrivateTest", "+ flip TTA", "macro-F1 (flip)", "PublicTest",
                   "vs FER+ majority", "mean of 14 corruptions", "date", "command"], rows, {2, 3, 4, 5, 6, 7, 8})


def _ferplus_table(s: dict) -> list[str]:
    rows = []
    for name, c, status in _face_rows(s, "ferplus8"):
        m = c["metrics"]
        bias = (c.get("logit_bias") or {}).get("biases")
        rows.append([f"`{name}`", status, _pct(_acc(m, "PrivateTest")), _pct(_acc(m, "PrivateTest+tta_flip")),
                     _f3(_acc(m, "PrivateTest+tta_flip", "macro_f1")), _pct(_acc(m, "PublicTest")),
                     ", ".join(f"{k} {v:+g}" for k, v in (bias or {}).items()) or "–", m.get("evaluated", "–"),
                     f"`{_eval_cmd(name, c)}`"])
    return _table(["model", "status", "PrivateTest", "+ flip TTA", "macro-F1 (flip)", "PublicTest",
                   "logit bias", "date", "command"], rows, {2, 3, 4, 5})


def _gender_tables(s: dict) -> list[str]:
    out = []
    for name, c in s["shipped"].items():
        if c.get("label_set") != "gender2":
            continue
        m = c.get("metrics") or {}
        t = m.get("test") or {}
        status = _status(name, s["aliases"], s["shipped"], s["members"])
        out.append(f"`{name}` ({status}), UTKFace held-out test split (n = {t.get('n', '?'):,}), "
                   f"{m.get('evaluated', '–')}: `{_eval_cmd(name, c)}`. {c.get('license', '')}".rstrip())
        out.append("")
        rows = [["all", "all faces", _pct(t.get("accuracy")), f"{t.get('n', 0):,}", "–"]]
        groups = [("age", "adults (20+)", t.get("adults")), ("age", "children (0-19)", t.get("children"))]
        for fam, key in (("gender", "by_gender"), ("race", "by_race"), ("age band", "by_age")):
            groups += [(fam, g, v) for g, v in (t.get(key) or {}).items()]
        for fam, g, v in groups:
            if isinstance(v, dict):
                ci = v.get("ci95")
                rows.append([fam, g, _pct(v.get("accuracy")), f"{v.get('n', 0):,}",
                             f"{_pct(ci[0])} – {_pct(ci[1])}" if ci else "–"])
        out += _table(["by", "group", "accuracy", "n", "95 % interval"], rows, {2, 3})
        gaps = t.get("gaps") or {}
        if gaps:
            out += ["", "Largest gaps: " + "; ".join(
                f"{k.replace('_', ' ')}: {v['best']} vs {v['worst']} {100 * v['gap']:.1f} points"
                for k, v in gaps.items() if isinstance(v, dict) and "gap" in v) + "."]
    return out


def _text_table(s: dict) -> list[str]:
    rows = []
    for name, c in s["text"].items():
        card = c.get("card") or {}
        t = card.get("test") or {}
        members = card.get("members") or [c.get("kind", "?")]
        rows.append([f"`{name}`", card.get("dataset", name), " + ".join(str(x).split("-")[0] for x in members),
                     _pct(t.get("accuracy")), _f3(t.get("macro_f1")), _f3(t.get("micro_f1")),
                     f"{t.get('n', 0):,}", _f3(card.get("val_macro_f1")), card.get("date", "–"),
                     f"`python benchmarks/text_benchmark.py --datasets {card.get('dataset', name)} --ship`"])
    return _table(["model", "dataset", "members", "test accuracy", "test macro-F1", "test micro-F1", "n",
                   "val macro-F1", "date", "command"], rows, {3, 4, 5, 6, 7})


def _speed_table(s: dict) -> list[str]:
    rows = []
    for name, c in list(s["shipped"].items()) + [(n, c) for n, c in s["retired"].items() if n not in s["shipped"]]:
        lat = (c.get("onnx_graph") or {}).get("latency")
        if not lat:
            continue
        rows.append([f"`{name}`", _status(name, s["aliases"], s["shipped"], s["members"]),
                     f"{lat['int8_ms_per_face']:.2f}", f"{lat['float_ms_per_face']:.2f}",
                     f"{lat.get('int8_ms_per_face_batch64', float('nan')):.2f}", lat.get("machine", "?"),
                     lat.get("date", "–"), f"`{_train_cmd(c)}`"])
    return _table(["model", "status", "int8 ms/face (batch 1)", "float ms/face (batch 1)",
                   "int8 ms/face (batch 64)", "machine", "date", "command"], rows, {2, 3, 4})


def _result_block(r: dict, level: str = "##") -> list[str]:
    out = [f"{level} {r.get('title', 'benchmark')}", ""]
    meta = f"Command: `{r['command']}`. Machine: {r.get('machine', '?')}. Date: {r.get('date', '?')}."
    if r.get("details"):
        meta += f" Details: [{r['details']}]({r['details']})."
    out += [meta, ""]
    for t in r.get("tables", []):
        if t.get("caption"):
            out += [f"{t['caption']}:", ""]
        out += _table(t["columns"], t["rows"]) + [""]
    return out


def render_leaderboard(docs: str | os.PathLike | None = None) -> str:
    """The Markdown of ``docs/RESULTS.md``. ``docs`` is the checkout's docs folder (retired cards, benchmark JSON);
    default ``./docs``."""
    docs = Path(docs) if docs is not None else Path("docs")
    s = _sections(docs)
    res = s["results"]
    out = ["# Results", "",
           "<!-- generated by `python -m emotionlab.models.leaderboard --out docs/RESULTS.md`: do not edit; "
           "edit the model cards or docs/results/*.json -->", "",
           "Every number below is read from a model card (`emotionlab models show NAME`; retired models' cards in "
           "[model_cards/retired/](model_cards/retired/), their weights in git history at "
           f"`{RETIRED_AT}`) or from a benchmark's JSON record in [results/](results/). How each shipped model was "
           "trained: [configs/README.md](../configs/README.md). What changed for users: "
           "[CHANGELOG.md](../CHANGELOG.md).", "",
           f"Commands use `{DATA_VARS}`; `emotionlab` is `.venv/bin/emotionlab`. Detailed reports: "
           "[data](results_data.md) · [pipeline](results_pipeline.md) · [peers](results_peers.md) · "
           "[explain](results_explain.md) · [robustness](results_robustness.md) · [gender](results_gender.md) · "
           "[text](results_text.md) · [serve](results_serve.md) · [hostile inputs](results_hostile.md) · "
           "[classic nets](results_zoo.md) · [training speed](results_training.md) · "
           "[streams and videos](results_video.md) · [calibration](results_calibration.md) · "
           "[label review](results_label_review.md).", "",
           "## Shipped models", ""]
    out += _shipped_table(s) + [""]
    out += ["## FER-2013 PrivateTest (7 classes)", "",
            "Train on `Training` (28,709), select on `PublicTest` (3,589), report on `PrivateTest` (3,589), which "
            "no training or selection step reads. *vs FER+ majority*: the same PrivateTest faces scored against "
            "the majority of FER+'s 10 annotators (3,137 faces with a majority in the 7 classes).", ""]
    out += _fer_table(s) + [""]
    if "fer2013_tta" in res:
        out += _result_block(res["fer2013_tta"], "###")
    out += ["## FER+ (8 classes, FER-2013 PrivateTest faces, FER+ majority labels)", ""]
    out += _ferplus_table(s) + [""]
    out += ["## Text", "", "Test splits of each dataset; hyper-parameters and ensemble weights tuned on validation "
            "only. GoEmotions is multi-label (micro-F1); the others are single-label.", ""]
    out += _text_table(s) + [""]
    out += ["## Apparent gender and its groups", ""]
    out += _gender_tables(s) + [""]
    out += ["## Speed", "", "Per-face classification timed by `emotionlab maintain quantize` into each int8 card "
            "(ONNX Runtime, 1 thread, random input; median over 5 interleaved rounds). End-to-end frame rates "
            "and the peer's speed are in the peer comparison below; speeds from different machines are not "
            "comparable.", ""]
    out += _speed_table(s) + [""]
    for key in sorted(res):
        if key not in ("fer2013_tta",):
            out += _result_block(res[key])
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def write_leaderboard(out: str | os.PathLike) -> str:
    """Render from the docs folder that ``out`` sits in and write atomically; returns the Markdown."""
    out = Path(out)
    text = render_leaderboard(out.parent)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotionlab.models.leaderboard", description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", type=Path, help="write the leaderboard here (its folder holds results/ and model_cards/)")
    g.add_argument("--check", type=Path, help="exit 1 if this file differs from a fresh render")
    a = ap.parse_args(argv)
    target = a.out or a.check
    if not target.parent.is_dir():
        print(f"error: {target.parent} is not a folder (expected the checkout's docs/)", file=sys.stderr)
        return 2
    try:
        if a.check:
            if not a.check.exists() or a.check.read_text() != render_leaderboard(a.check.parent):
                print(f"{a.check} is out of date: run python -m emotionlab.models.leaderboard --out {a.check}",
                      file=sys.stderr)
                return 1
            return 0
        write_leaderboard(a.out)
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

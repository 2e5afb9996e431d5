"""Text emotion: readers, normalization, every model kind, offline MiniLM, shipped models and the CLI."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from emotionlab.data.errors import DataError
from emotionlab.text import TextEmotionClassifier, load_text_model
from emotionlab.text.datasets import (
    CROWDFLOWER_MERGE,
    crowdflower_fine_labels,
    load_text_dataset,
    read_carer,
    read_crowdflower,
    read_goemotions,
    read_text_column,
    read_tweeteval,
)
from emotionlab.text.normalize import MAX_CHARS, normalize_for_embedding, normalize_text, tokenize

LABELS = ["joy", "sadness", "anger"]
SHIPPED_EXPECTED = Path(__file__).parent / "data" / "text_shipped_expected.json"
WORDS = {0: ["happy", "joy", "great", "love", "smile", "wonderful"],
         1: ["sad", "cry", "tears", "lonely", "miss", "grief"],
         2: ["angry", "hate", "mad", "furious", "rage", "annoyed"]}
FILLER = ["the", "a", "today", "is", "it", "so", "very", "and", "i", "feel", "this", "was"]


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Learnable three-class texts: two class keywords among filler words."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for i in range(n):
        c = i % 3
        w = list(rng.choice(WORDS[c], 2)) + list(rng.choice(FILLER, 4))
        rng.shuffle(w)
        texts.append(" ".join(w))
        y.append(c)
    return texts, np.asarray(y)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(90, 0), make_corpus(30, 1)


# ------------------------------------------------------------------------------------------------ readers
def _tweeteval_dir(tmp_path, bad_label: str | None = None):
    d = tmp_path / "tweeteval_emotion"
    d.mkdir()
    (d / "mapping.txt").write_text("0\tjoy\n1\tsadness\n2\tanger\n")
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        texts, y = make_corpus(30 if split == "train" else 12, seed)
        (d / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
        labels = [str(v) for v in y]
        if bad_label and split == "val":
            labels[3] = bad_label
        (d / f"{split}_labels.txt").write_text("\n".join(labels) + "\n")
    return d


def test_tweeteval_reader_and_errors(tmp_path):
    d = _tweeteval_dir(tmp_path)
    sp = read_tweeteval(d)
    assert sp["train"].labels == ["joy", "sadness", "anger"] and len(sp["val"]) == 12
    assert load_text_dataset("tweeteval", tmp_path)["test"].y.tolist() == sp["test"].y.tolist()
    (tmp_path / "b").mkdir()
    bad = _tweeteval_dir(tmp_path / "b", bad_label="7")
    with pytest.raises(DataError, match=r"val_labels.txt:4: expected a label id"):
        read_tweeteval(bad)
    (d / "test_labels.txt").write_text("0\n1\n")
    with pytest.raises(DataError, match="2 labels for 12 texts"):
        read_tweeteval(d)


def test_carer_reader_errors(tmp_path):
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.txt").write_text("i feel great;joy\ni am so sad;sadness\n")
    sp = read_carer(tmp_path)
    assert sp["train"].texts == ["i feel great", "i am so sad"] and sp["train"].y.tolist() == [1, 0]
    (tmp_path / "val.txt").write_text("i feel great;joy\nno separator here\n")
    with pytest.raises(DataError, match=r"val.txt:2: expected 'text;label'"):
        read_carer(tmp_path)
    (tmp_path / "val.txt").write_text("i feel great;happyish\n")
    with pytest.raises(DataError, match=r"val.txt:1: unknown label 'happyish'"):
        read_carer(tmp_path)
    (tmp_path / "val.txt").write_bytes(b"fine;joy\nbad \xff\xfe bytes;joy\n")
    with pytest.raises(DataError, match=r"val.txt:2: not valid UTF-8"):
        read_carer(tmp_path)


def test_goemotions_reader_multilabel_and_ekman(tmp_path):
    (tmp_path / "emotions.txt").write_text("admiration\nanger\njoy\nneutral")
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.tsv").write_text("so cool\t0,2\tid1\nugh\t1\tid2\n")
    sp = read_goemotions(tmp_path)
    assert sp["train"].multi_label and sp["val"].y.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]]
    (tmp_path / "emotions.txt").write_text("admiration\nanger\njoy\nneutral\nsnark\n")
    with pytest.raises(DataError, match="without an Ekman group"):
        read_goemotions(tmp_path, ekman=True)
    (tmp_path / "emotions.txt").write_text("admiration\nanger\njoy\nneutral\n")
    ek = read_goemotions(tmp_path, ekman=True)["train"]
    assert ek.labels[3] == "joy" and ek.y[0].tolist() == [0, 0, 0, 1, 0, 0, 0]
    (tmp_path / "test.tsv").write_text("fine\t9\tid\n")
    with pytest.raises(DataError, match=r"test.tsv:1: label id 9 outside"):
        read_goemotions(tmp_path)


def test_crowdflower_reader_merge_split_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["tweet_id,sentiment,content"]
    src = ["happiness", "fun", "love", "neutral", "sadness", "worry", "boredom"]
    for i in range(140):
        rows.append(f'{i},{src[i % 7]},"tweet {i} &amp; {rng.integers(1000)}"')
    p = tmp_path / "tweet_emotions.csv"
    p.write_text("\n".join(rows) + "\n")
    sp = read_crowdflower(p)
    assert sp["train"].labels == sorted(set(CROWDFLOWER_MERGE.values()))
    n = sum(len(v) for v in sp.values())
    assert n == 120  # 'boredom' (20 rows) dropped by the documented merge table, nothing else
    assert 10 <= len(sp["test"]) <= 14
    again = read_crowdflower(p)
    assert again["test"].texts == sp["test"].texts  # seeded split
    assert len(read_crowdflower(p, merge=False)["train"].labels) == 13
    (tmp_path / "bad.csv").write_text("tweet_id,sentiment,text\n1,fun,hello\n")
    with pytest.raises(DataError, match=r"bad.csv:1: missing column 'content'"):
        read_crowdflower(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("tweet_id,sentiment,content\n1,fun,hello\n2,glee,hi\n")
    with pytest.raises(DataError, match=r"bad.csv:3: unknown sentiment 'glee'"):
        read_crowdflower(tmp_path / "bad.csv")


def test_crowdflower_fine_labels_keep_13_labels_and_no_held_out_text(tmp_path):
    rows = ["tweet_id,sentiment,content"]
    src = ["happiness", "fun", "love", "neutral", "sadness", "worry", "boredom"]
    for i in range(140):
        rows.append(f"{i},{src[i % 7]},tweet number {i}")
    for i in range(0, 60, 6):  # dropped-label copies (other case, extra space) of ten 5-class texts
        rows.append(f"{140 + i},boredom,TWEET NUMBER {i} ")
    p = tmp_path / "tweet_emotions.csv"
    p.write_text("\n".join(rows) + "\n")
    sp = read_crowdflower(p)
    held = {t.strip().casefold() for t in sp["val"].texts + sp["test"].texts}
    aux = crowdflower_fine_labels(p)
    assert len(aux.labels) == 13 and not held & {t.strip().casefold() for t in aux.texts}
    # every 5-class training row is there with its original label ('fun' stays 'fun')
    assert set(sp["train"].texts) <= set(aux.texts)
    lab = dict(zip(aux.texts, (aux.labels[i] for i in aux.y)))
    assert {lab[t] for t in sp["train"].texts if int(t.split()[-1]) % 7 == 1} == {"fun"}
    # dropped rows come in unless their text is a held-out one
    copies = [f"TWEET NUMBER {i} " for i in range(0, 60, 6)]
    kept = [c for c in copies if c in aux.texts]
    assert 0 < len(kept) < len(copies) and all(c.strip().casefold() not in held for c in kept)
    assert len(aux) == len(sp["train"]) + 20 + len(kept)


def test_read_text_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,content\n1,hello there\n2,\"a, b\"\n")
    assert read_text_column(p, "content") == ["hello there", "a, b"]
    assert read_text_column(p) == ["hello there", "a, b"]
    with pytest.raises(DataError, match="missing column 'tweet'"):
        read_text_column(p, "tweet")
    q = tmp_path / "t.txt"
    q.write_text("one\ntwo\n")
    assert read_text_column(q) == ["one", "two"]


# ------------------------------------------------------------------------------------------ normalization
def test_normalization_keeps_signal():
    t = "@bob I LOVE this!!! 😂😂 #blessed http://t.co/x :) soooooo good &amp; fun <3"
    n = normalize_text(t)
    assert "@user" in n and "@bob" not in n and "http" in n and "t.co" not in n
    assert "#blessed" in n and "😂" in n and "&" in n and "&amp;" not in n and "sooo " in n
    toks = tokenize(n)
    assert ":)" in toks and "<3" in toks and "😂" in toks and "#blessed" in toks
    e = normalize_for_embedding(t)
    assert "face with tears of joy" in e and "smile" in e and "blessed" in e and "#" not in e and "love" in e
    assert "frown" in normalize_for_embedding("not today :(")
    assert len(normalize_text("a" * (MAX_CHARS * 3))) <= MAX_CHARS


# ---------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("kind", ["naive_bayes", "tfidf_lr", "tfidf_svm", "embed_lr", "embed_mlp"])
def test_model_fit_predict_save_load(kind, corpus, tmp_path):
    (tr, ytr), (va, yva) = corpus
    params = {"epochs": 40} if kind == "embed_mlp" else {}
    m = TextEmotionClassifier(kind, **params).fit(tr, ytr, LABELS, val=(va, yva))
    p = m.predict_proba(va)
    assert p.shape == (30, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == yva).mean() >= 0.8
    assert m.predict(["i feel so happy and wonderful today"]).tolist() == ["joy"]
    out = m(["i feel so happy and wonderful today"])
    assert out[0][0]["label"] == "joy" and [r["score"] for r in out[0]] == sorted([r["score"] for r in out[0]],
                                                                                  reverse=True)
    m.save(tmp_path / "m")
    m2 = TextEmotionClassifier.load(tmp_path / "m.json")
    assert m2.kind == kind and m2.labels == LABELS
    assert np.allclose(m2.predict_proba(va), p, atol=1e-3)
    with pytest.raises(ValueError, match="empty or whitespace"):
        m(["fine", "   "])


def test_tfidf_svm_calibration_single_and_multi_label(corpus, tmp_path):
    """tfidf_svm: a softmax temperature (single-label) or per-class Platt scaling (multi-label) from CV scores."""
    (tr, ytr), (va, yva) = corpus
    m = TextEmotionClassifier("tfidf_svm", C=0.3, calib_folds=3).fit(tr, ytr, LABELS)
    head = m.backend.head
    assert head.temperature > 0 and head.temperature != 1.0
    raw = m.backend.features(va) @ (head.coef / head.temperature).T + head.intercept / head.temperature
    assert (np.asarray(raw).argmax(1) == m.predict_proba(va).argmax(1)).all()  # scaling keeps the SVM decision
    y = np.eye(3, dtype=np.uint8)[ytr]
    y[::4, 0] = 1
    ml = TextEmotionClassifier("tfidf_svm", C=0.3).fit(tr, y, LABELS, multi_label=True,
                                                       val=(va, np.eye(3, dtype=np.uint8)[yva]))
    p = ml.predict_proba(va)
    assert p.shape == (30, 3) and ((p > 0) & (p < 1)).all() and ml.thresholds is not None
    assert ml.predict_labels(["so sad i cry tears"])[0] == ["sadness"]
    ml.save(tmp_path / "ml")
    assert np.allclose(TextEmotionClassifier.load(tmp_path / "ml").predict_proba(va), p, atol=1e-3)
    few = np.array([0] * 88 + [1, 2])  # a class with one example: no cross-validation, temperature 1
    assert TextEmotionClassifier("tfidf_svm").fit(tr, few, LABELS).backend.head.temperature == 1.0


def test_naive_bayes_matches_nltk_and_informative_table(corpus):
    (tr, ytr), (va, _) = corpus
    m = TextEmotionClassifier("naive_bayes", top_words=50).fit(tr, ytr, LABELS)
    nb = m.backend.nltk_model
    for text in va[:5]:
        present = set(tokenize(normalize_text(text)))
        pd = nb.prob_classify({w: (True if w in present else None) for w in m.backend.vocab})
        assert np.allclose([pd.prob(c) for c in range(3)], m.predict_proba([text])[0], atol=1e-5)
    table = m.most_informative_features(5)
    assert len(table) == 5 and table[0]["feature"].startswith("contains(") and table[0]["ratio"] > 2
    with pytest.raises(ValueError, match="naive_bayes"):
        TextEmotionClassifier("tfidf_lr").fit(tr, ytr, LABELS).most_informative_features()


def test_multilabel_thresholds_and_ensemble(corpus, tmp_path):
    (tr, ytr), (va, yva) = corpus
    y = np.eye(3, dtype=np.uint8)[ytr]
    y[::4, 0] = 1
    yv = np.eye(3, dtype=np.uint8)[yva]
    a = TextEmotionClassifier("tfidf_lr").fit(tr, y, LABELS, multi_label=True, val=(va, yv))
    assert a.thresholds is not None and a.thresholds.shape == (3,)
    labs = a.predict_labels(va[:6])
    assert all(isinstance(x, list) for x in labs) and labs[1] == ["sadness"]
    b = TextEmotionClassifier("naive_bayes").fit(tr, y, LABELS, multi_label=True)
    e = TextEmotionClassifier.ensemble([a, b], [0.7, 0.3])
    e.save(tmp_path / "ens")
    e2 = TextEmotionClassifier.load(tmp_path / "ens")
    assert np.allclose(e2.predict_proba(va), e.predict_proba(va), atol=1e-3)
    with pytest.raises(ValueError, match="multi-label y must be"):
        TextEmotionClassifier("tfidf_lr").fit(tr, ytr, LABELS, multi_label=True)
    typo = TextEmotionClassifier("bert_xxl")  # scikit-learn style: __init__ stores, fit checks
    with pytest.raises(ValueError, match="unknown text model kind"):
        typo.fit(tr, ytr, LABELS)


def test_ensemble_weights_respect_byte_budget_and_drop_zero_members(corpus, tmp_path):
    """tune_ensemble never picks a weighting whose non-zero members exceed max_bytes; weight-0 members are left out."""
    from emotionlab.text.datasets import TextDataset
    from emotionlab.text.train import tune_ensemble

    (tr, ytr), (va, yva) = corpus
    big = TextEmotionClassifier("tfidf_lr", name="big").fit(tr, ytr, LABELS)
    small = TextEmotionClassifier("naive_bayes", name="small").fit(tr, ytr, LABELS)
    val = TextDataset(va, yva, LABELS, False, "tiny")
    assert big.nbytes() > small.nbytes() > 0
    free = tune_ensemble([big, small], val, metric="accuracy")
    assert len(free.members) == len(free.weights) and all(w > 0 for w in free.weights)
    assert set(free.card["candidates"]) == {"big", "small"}
    capped = tune_ensemble([big, small], val, metric="accuracy", max_bytes=big.nbytes() - 1)
    assert [m.name for m in capped.members] == ["small"] and capped.weights == [1.0]
    assert capped.card["candidates"]["big"] == 0.0
    capped.save(tmp_path / "capped")
    assert (tmp_path / "capped.safetensors").stat().st_size < big.nbytes()
    with pytest.raises(ValueError, match="no weighting"):
        tune_ensemble([big, small], val, max_bytes=1)


def test_refit_train_val_keeps_choices_and_uses_both_splits(corpus):
    """refit_train_val: every member refit on train + val with the same params and weights; refusals are explicit."""
    from emotionlab.text.datasets import TextDataset
    from emotionlab.text.train import refit_train_val

    (tr, ytr), (va, yva) = corpus
    va, yva = va + ["zebraword happy great", "zebraword joy smile"], np.append(yva, [0, 0])  # only in validation
    splits = {"train": TextDataset(tr, ytr, LABELS, False, "tiny"), "val": TextDataset(va, yva, LABELS, False, "tiny")}
    lr = TextEmotionClassifier("tfidf_lr", name="tfidf_lr-tiny", C=3.0).fit(tr, ytr, LABELS)
    nb = TextEmotionClassifier("naive_bayes", name="naive_bayes-tiny").fit(tr, ytr, LABELS)
    ens = TextEmotionClassifier.ensemble([lr, nb], [0.7, 0.3], name="ensemble-tiny")
    ens.card.update(val_accuracy=0.9, tuned_for="accuracy")
    out = refit_train_val(ens, splits, log=lambda *_: None)
    assert out.kind == "ensemble" and out.weights == [0.7, 0.3]
    assert [m.name for m in out.members] == ["tfidf_lr-tiny", "naive_bayes-tiny"]
    assert out.members[0].params == lr.params and out.members[0].params["C"] == 3.0
    assert all(m.card["n_train"] == len(tr) + len(va) and m.card["refit"] == "train+val" for m in out.members)
    assert "val_accuracy" not in out.card and out.card["refit_from"]["val_accuracy"] == 0.9
    # the refit tfidf vocabulary comes from train + val: the word seen only in val is now a feature
    assert "zebraword" not in lr.backend.word.vocabulary_ and "zebraword" in out.members[0].backend.word.vocabulary_
    p = out.predict_proba(va)
    assert p.shape == (len(va), 3) and np.allclose(p.sum(1), 1, atol=1e-6)
    mlp = TextEmotionClassifier("embed_mlp", name="mlp")
    with pytest.raises(ValueError, match="uses validation while fitting"):
        refit_train_val(mlp, splits)
    multi = TextDataset(tr, np.eye(3, dtype=np.uint8)[ytr], LABELS, True, "tiny")
    with pytest.raises(ValueError, match="single-label only"):
        refit_train_val(lr, {"train": multi, "val": multi})


def test_finetune_tiny_roundtrip(tmp_path):
    """End-to-end MiniLM fine-tuning (top layer only, two steps): trains, saves only that layer, reloads."""
    texts = ["so happy today", "great joy", "i am sad", "tears and grief"]
    y = np.array([0, 0, 1, 1])
    m = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2)
    m.fit(texts, y, ["joy", "sadness"])
    p = m.predict_proba(texts)
    assert p.shape == (4, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    m.save(tmp_path / "ft")
    assert (tmp_path / "ft.safetensors").stat().st_size < 5_000_000  # one layer in float16 + head
    assert np.allclose(TextEmotionClassifier.load(tmp_path / "ft").predict_proba(texts), p, atol=2e-3)
    # fine-tunes in one process share the packaged, frozen MiniLM tensors (one copy) but not their tuned layers
    a, b = (TextEmotionClassifier.load(tmp_path / "ft").backend.enc for _ in range(2))
    assert a.embeddings.word_embeddings.weight.data_ptr() == b.embeddings.word_embeddings.weight.data_ptr()
    assert a.encoder.layer[0].output.dense.weight.data_ptr() == m.backend.enc.encoder.layer[0].output.dense.weight.data_ptr()
    assert a.encoder.layer[-1].output.dense.weight.data_ptr() != b.encoder.layer[-1].output.dense.weight.data_ptr()
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(tmp_path / "ft.safetensors"))
    # a file that would overwrite a frozen (shared) layer is refused
    bad = dict(arrays, **{"enc.encoder.layer.0.output.dense.bias": np.zeros(384, np.float16)})
    save_file(bad, str(tmp_path / "bad.safetensors"))
    (tmp_path / "bad.json").write_text((tmp_path / "ft.json").read_text())
    with pytest.raises(ValueError, match="keeps frozen"):
        TextEmotionClassifier.load(tmp_path / "bad")
    assert np.allclose(TextEmotionClassifier.load(tmp_path / "ft").predict_proba(texts), p, atol=2e-3)
    # a saved model whose head is missing does not load with a random one
    save_file({k: v for k, v in arrays.items() if ".head." not in f".{k}"}, str(tmp_path / "ft.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        TextEmotionClassifier.load(tmp_path / "ft")


def test_finetune_continue_keeps_validation_best():
    """Continued fine-tuning starts from an earlier model, scores it first and records checkpoints and origin."""
    from emotionlab.text.datasets import TextDataset
    from emotionlab.text.train import train_tuned

    texts = ["so happy today", "great joy", "i am sad", "tears and grief"]
    y = np.array([0, 0, 1, 1])
    base = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2)
    base.fit(texts, y, ["joy", "sadness"])
    base.card.update(val_accuracy=1.0, train_seconds=1.0)
    ds = TextDataset(texts, y, ["joy", "sadness"], False, "tiny")
    m = train_tuned("finetune", {"train": ds, "val": ds}, metric="accuracy", init=base, log=lambda *_: None,
                    grid=[{"train_layers": 1, "epochs": 1, "max_length": 12, "batch_size": 2, "lr": 1e-5,
                           "evals_per_epoch": 2}])
    hist = m.card["sweep"][0]["history"]
    assert [h["epoch"] for h in hist] == [0.0, 0.5, 1.0]
    assert hist[0]["val_accuracy"] == pytest.approx(float((base.predict_proba(texts).argmax(1) == y).mean()))
    assert m.card["val_accuracy"] == max(h["val_accuracy"] for h in hist)  # best checkpoint on validation
    assert m.card["continued_from"]["params"]["epochs"] == 1
    with pytest.raises(ValueError, match="only supported for finetune"):
        train_tuned("tfidf_lr", {"train": ds, "val": ds}, init=base)


def test_minilm_offline_no_network(monkeypatch):
    """The bundled MiniLM loads and embeds with every socket connection refused."""
    from emotionlab.text import embed

    def refuse(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(embed, "_MODEL", None)
    v = embed.embed_texts(["I am so happy today", "This is terrible and sad", "I am so happy today"], cache=False)
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert np.allclose(v[0], v[2], atol=1e-5) and float(v[0] @ v[1]) < 0.9
    cached = embed.embed_texts(["I am so happy today"])  # writes the cache, then reads it back
    assert np.allclose(embed.embed_texts(["I am so happy today"]), cached)


# ------------------------------------------------------------------------------------------ shipped models
@pytest.mark.parametrize("name", ["tweeteval", "carer", "goemotions", "crowdflower"])
def test_shipped_models_load_and_predict(name):
    clf = load_text_model(name)
    assert clf.card.get("dataset") and clf.card.get("test")  # benchmark numbers travel with the model
    p = clf.predict_proba(["I am so happy and joyful today!"])
    assert p.shape == (1, len(clf.labels))
    if not clf.multi_label:
        assert abs(float(p.sum()) - 1) < 1e-4
    top = clf.labels[int(p.argmax())]
    assert top in ("joy", "happiness", "love", "optimism", "admiration", "excitement")
    # the numbers the model shipped with (recorded before the #35 split of text/models.py), every member too
    want = json.loads(SHIPPED_EXPECTED.read_text())
    texts, exp = want["sentences"], want["models"][name]
    assert clf.labels == exp["labels"]
    raw = clf._proba(texts)  # before the card's temperature (fitted later, #36): the numbers shipped
    assert np.abs(raw - np.asarray(exp["proba"])).max() < 1e-5
    from emotionlab.models.calibration import apply_temperature, apply_temperature_multilabel

    scale = apply_temperature_multilabel if clf.multi_label else apply_temperature
    assert np.abs(clf.predict_proba(texts) - scale(np.asarray(exp["proba"]), clf.temperature)).max() < 1e-5
    for m, pm in zip(clf.members, exp["members"], strict=True):
        assert np.abs(m.predict_proba(texts) - np.asarray(pm)).max() < 1e-5
    assert clf.predict_labels(texts) == exp["decided"]


def test_shipped_default_predicts_obvious_texts():
    clf = load_text_model("default")
    assert clf.labels and clf.name == "default"
    out = clf(["I am so happy and joyful today!", "I am furious, this makes me so angry!"])
    assert out[0][0]["label"] in ("joy", "happiness", "happy")
    assert out[1][0]["label"] == "anger"
    with pytest.raises(ValueError, match="unknown text model 'nope'"):
        load_text_model("nope")


# --------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    tr, ytr = make_corpus(90, 0)
    path = tmp_path_factory.mktemp("textmodel") / "tiny"
    TextEmotionClassifier("tfidf_lr").fit(tr, ytr, LABELS).save(path)
    return path.with_suffix(".json")


def _run(args):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    r = CliRunner().invoke(app, args)
    r.flat = " ".join(r.output.split())  # Rich wraps long error lines
    return r


def test_cli_text_table_and_json(saved_model):
    r = _run(["text", "so happy and wonderful", "i hate this, so angry", "--model", str(saved_model), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [d["label"] for d in data] == ["joy", "anger"] and len(data[0]["scores"]) == 3
    r = _run(["text", "tears and grief", "--model", str(saved_model)])
    assert r.exit_code == 0 and "sadness" in r.stdout


def test_cli_text_with_brackets_is_printed_as_text_not_markup(saved_model):
    r = _run(["text", "I [/love] this [bold] so happy", "--model", str(saved_model)])
    assert r.exit_code == 0, r.output  # '[/love]' used to raise rich's MarkupError
    assert "I [/love] this [bold] so happy" in r.stdout


def test_huge_text_is_truncated_not_a_crash(saved_model):
    clf = TextEmotionClassifier.load(saved_model)
    huge = "so happy and wonderful " * 50_000  # about 1 MB
    out = clf([huge])[0]
    assert out[0]["label"] == "joy" and abs(sum(r["score"] for r in out) - 1) < 1e-4


def test_cli_text_bad_input(saved_model, tmp_path):
    r = _run(["text", "   ", "--model", str(saved_model)])
    assert r.exit_code == 2 and "empty" in r.flat and "Traceback" not in r.flat
    r = _run(["text", "hello", "--model", "no_such_model"])
    assert r.exit_code == 2 and "unknown text model" in r.flat
    r = _run(["text"])
    assert r.exit_code == 2 and "--file" in r.flat
    p = tmp_path / "in.csv"
    p.write_text("id,content\n1,happy\n")
    r = _run(["text", "--file", str(p), "--column", "tweet", "--model", str(saved_model)])
    assert r.exit_code == 2 and "missing column 'tweet'" in r.flat
    p.write_bytes(b"id,content\n1,happy \xff\n")
    r = _run(["text", "--file", str(p), "--model", str(saved_model)])
    assert r.exit_code == 2 and "not valid UTF-8" in r.flat


def test_cli_text_file(saved_model, tmp_path):
    p = tmp_path / "in.csv"
    p.write_text("id,content\n1,so happy and great\n2,\n3,furious rage\n")
    out = tmp_path / "preds.csv"
    r = _run(["text", "--file", str(p), "--column", "content", "--out", str(out), "--model", str(saved_model)])
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [x["label"] for x in rows] == ["joy", "", "anger"] and rows[1]["error"] == "empty text"
    assert abs(sum(float(rows[0][f"score_{lab}"]) for lab in LABELS) - 1) < 1e-3


def test_cli_text_evaluate(saved_model, tmp_path):
    _tweeteval_dir(tmp_path)
    r = _run(["text-evaluate", "--dataset", "tweeteval", "--data", str(tmp_path), "--model", str(saved_model),
              "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["accuracy"] >= 0.8 and len(m["confusion_matrix"]) == 3 and "joy" in m["per_class"]
    r = _run(["text-evaluate", "--dataset", "tweeteval", "--data", str(tmp_path), "--model", str(saved_model)])
    assert r.exit_code == 0 and "macro-F1" in r.stdout
    r = _run(["text-evaluate", "--dataset", "imdb", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "unknown dataset" in r.flat
    r = _run(["text-evaluate", "--dataset", "carer", "--data", str(tmp_path), "--model", str(saved_model)])
    assert r.exit_code == 2 and "no carer data" in r.flat


@pytest.mark.slow
def test_real_text_datasets_read(shared_data):
    expected = {"tweeteval": (3257, 374, 1421), "carer": (16000, 2000, 2000), "goemotions": (43410, 5426, 5427)}
    for name, sizes in expected.items():
        sp = load_text_dataset(name, shared_data)
        assert tuple(len(sp[k]) for k in ("train", "val", "test")) == sizes
    cf = load_text_dataset("crowdflower", shared_data)
    assert cf["train"].labels == ["happiness", "love", "neutral", "sadness", "worry"]
    assert sum(len(v) for v in cf.values()) == 40000 - (827 + 2187 + 1323 + 179 + 110)  # dropped labels only


@pytest.fixture
def text_benchmark(tmp_path, monkeypatch):
    """benchmarks/text_benchmark.py as a module, writing under tmp_path instead of the repository."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("text_benchmark", root / "benchmarks" / "text_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "REPO", tmp_path)
    return mod


def test_benchmark_refit_shipped_scores_once_and_ships(corpus, tmp_path, monkeypatch, text_benchmark):
    """text_benchmark --refit-trainval: the shipped model is refit, scored on test, recorded and (with --ship) saved."""
    import argparse

    from emotionlab.text.datasets import TextDataset

    mod = text_benchmark
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    (tr, ytr), (va, yva) = corpus
    ds = {"train": TextDataset(tr, ytr, LABELS, False, "tiny"), "val": TextDataset(va, yva, LABELS, False, "tiny"),
          "test": TextDataset(va, yva, LABELS, False, "tiny")}
    weights = tmp_path / "src" / "emotionlab" / "text" / "weights"
    TextEmotionClassifier("tfidf_lr", name="tiny", C=2.0).fit(tr, ytr, LABELS).save(weights / "tiny")
    rows: dict = {}
    mod.refit_shipped("tiny", ds, argparse.Namespace(ship=True), lambda k, v: rows.__setitem__(k, v))
    row = rows["tiny/tfidf_lr_refit"]
    assert rows["tiny/shipped"] == "tfidf_lr_refit" and row["params"]["C"] == 2.0
    assert 0.0 <= row["accuracy"] <= 1.0 and row["val_accuracy"] is None
    shipped = TextEmotionClassifier.load(weights / "tiny.json")
    assert shipped.card["refit"] == "train+val" and shipped.card["n_train"] == len(tr) + len(va)
    assert shipped.card["test"]["accuracy"] == row["accuracy"]
    assert (tmp_path / "cache" / "text_models" / "tiny" / "tfidf_lr_refit.json").exists()


def test_finetune_init_encoder_transfers_layers_not_head(tmp_path):
    """init_encoder: the tuned layers start from another fine-tune (other label set), the head starts fresh."""
    from emotionlab.text.datasets import TextDataset
    from emotionlab.text.train import refit_train_val

    texts = ["so happy today", "great joy", "i am sad", "tears and grief"]
    src = TextEmotionClassifier("finetune", name="src", train_layers=1, epochs=1, max_length=12, batch_size=2)
    src.fit(texts, np.eye(3, dtype=np.uint8)[[0, 1, 2, 0]], ["a", "b", "c"], multi_label=True)
    src.card["dataset"] = "other"
    path = src.save(tmp_path / "src")
    # lr 0: the transferred layer must come out exactly as the source's, so any difference is a loading bug
    m = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2, lr=0.0,
                              init_encoder=str(path))
    m.fit(texts, np.array([0, 0, 1, 1]), ["joy", "sadness"])
    a, b = TextEmotionClassifier.load(path).backend._tuned_state(), m.backend._tuned_state()  # as saved: float16
    enc = [k for k in a if k.startswith("enc.")]
    assert enc and all(np.array_equal(a[k], b[k]) for k in enc)
    assert b["head.weight"].shape == (2, 384)  # its own head, not the 3-class one
    assert m.card["init_encoder"]["path"] == str(path) and m.card["init_encoder"]["dataset"] == "other"
    assert m.params["init_encoder"] == str(path)
    # the packaged MiniLM's top layer differs from the transferred one (the test would pass vacuously otherwise)
    fresh = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2, lr=0.0)
    fresh.fit(texts, np.array([0, 0, 1, 1]), ["joy", "sadness"])
    assert not all(np.array_equal(a[k], fresh.backend._tuned_state()[k]) for k in enc)
    # a refit keeps the start point (params carry the path)
    ds = TextDataset(texts, np.array([0, 0, 1, 1]), ["joy", "sadness"], False, "tiny")
    r = refit_train_val(m, {"train": ds, "val": ds}, log=lambda *_: None)
    assert r.card["init_encoder"]["path"] == str(path)
    # layers the new fine-tune would keep frozen cannot be transferred (the saved model would not carry them)
    deep = TextEmotionClassifier("finetune", train_layers=2, epochs=1, max_length=12, batch_size=2)
    deep.fit(texts, np.array([0, 1, 0, 1]), ["x", "y"])
    p2 = deep.save(tmp_path / "deep")
    shallow = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2,
                                    init_encoder=str(p2))
    with pytest.raises(ValueError, match="keeps frozen"):
        shallow.fit(texts, np.array([0, 0, 1, 1]), ["joy", "sadness"])
    with pytest.raises(ValueError, match="expected a fine-tuned"):
        lr_path = TextEmotionClassifier("tfidf_lr", C=1.0).fit(texts * 3, np.array([0, 0, 1, 1] * 3),
                                                                 ["joy", "sadness"]).save(tmp_path / "lr")
        TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2,
                              init_encoder=str(lr_path)).fit(texts, np.array([0, 0, 1, 1]), ["joy", "sadness"])


def test_benchmark_reuse_skips_refit_members(corpus, tmp_path, text_benchmark):
    """--reuse stand-ins: members refit on train + val are not offered (they have seen the validation split)."""
    (tr, ytr), _ = corpus
    a = TextEmotionClassifier("tfidf_lr", name="tfidf_lr-tiny", C=1.0).fit(tr, ytr, LABELS)
    b = TextEmotionClassifier("naive_bayes", name="naive_bayes-tiny").fit(tr, ytr, LABELS)
    b.card["refit"] = "train+val"
    weights = tmp_path / "src" / "emotionlab" / "text" / "weights"
    TextEmotionClassifier.ensemble([a, b], [0.5, 0.5], name="tiny").save(weights / "tiny")
    assert list(text_benchmark.shipped_members("tiny")) == ["tfidf_lr"]


def test_finetune_int8_storage_scores_as_saved(tmp_path):
    """quantize(): int8 weight matrices, about half the bytes; the model in memory is the one a reload gives."""
    from emotionlab.text.datasets import TextDataset
    from emotionlab.text.train import refit_train_val

    texts = ["so happy today", "great joy", "i am sad", "tears and grief"]
    y = np.array([0, 0, 1, 1])
    ft = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=12, batch_size=2)
    ft.fit(texts, y, ["joy", "sadness"])
    p16, n16 = ft.predict_proba(texts), ft.nbytes()
    lr = TextEmotionClassifier("tfidf_lr", C=1.0).fit(texts * 3, np.tile(y, 3), ["joy", "sadness"])
    ens = TextEmotionClassifier.ensemble([lr, ft], [0.5, 0.5]).quantize()  # walks into the members
    assert ft.backend.storage == "int8" and ft.card["weight_storage"].startswith("int8")
    assert 0.45 < ft.nbytes() / n16 < 0.55
    p8 = ft.predict_proba(texts)
    assert not np.array_equal(p8, p16) and np.abs(p8 - p16).max() < 0.05  # rounded, not broken
    ens.save(tmp_path / "ens")
    back = TextEmotionClassifier.load(tmp_path / "ens")
    assert back.members[1].backend.storage == "int8"
    assert np.abs(back.members[1].predict_proba(texts) - p8).max() < 1e-6  # (tfidf_lr's coef is float16 as saved)
    from safetensors.numpy import load_file

    arrays = load_file(str(tmp_path / "ens.safetensors"))
    q8 = [k for k in arrays if k.endswith(".q8")]
    assert q8 and all(arrays[k].dtype == np.int8 for k in q8)
    # a refit keeps the storage it was chosen with
    ds = TextDataset(texts, y, ["joy", "sadness"], False, "tiny")
    assert refit_train_val(ft, {"train": ds, "val": ds}, log=lambda *_: None).backend.storage == "int8"


def test_benchmark_refit_of_int8_ensemble_keeps_int8(corpus, tmp_path, monkeypatch, text_benchmark):
    """--refit-trainval on an ensemble with int8 fine-tunes: row 'ensemble_int8_refit', members stay int8."""
    import argparse

    from emotionlab.text.datasets import TextDataset

    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    (tr, ytr), (va, yva) = corpus
    ds = {"train": TextDataset(tr, ytr, LABELS, False, "tiny"), "val": TextDataset(va, yva, LABELS, False, "tiny"),
          "test": TextDataset(va, yva, LABELS, False, "tiny")}
    lr = TextEmotionClassifier("tfidf_lr", name="tfidf_lr-tiny", C=1.0).fit(tr, ytr, LABELS)
    ft = TextEmotionClassifier("finetune", name="finetune-tiny", train_layers=1, epochs=1, max_length=12,
                               batch_size=8).fit(tr, ytr, LABELS)
    weights = tmp_path / "src" / "emotionlab" / "text" / "weights"
    TextEmotionClassifier.ensemble([lr, ft], [0.5, 0.5], name="tiny").quantize().save(weights / "tiny")
    rows: dict = {}
    text_benchmark.refit_shipped("tiny", ds, argparse.Namespace(ship=True), lambda k, v: rows.__setitem__(k, v))
    assert rows["tiny/shipped"] == "ensemble_int8_refit" and "tiny/ensemble_int8_refit" in rows
    shipped = TextEmotionClassifier.load(weights / "tiny.json")
    assert shipped.members[1].backend.storage == "int8" and shipped.members[1].card["refit"] == "train+val"


def test_benchmark_int8_rows_and_ship(tmp_path, monkeypatch, text_benchmark):
    """text_benchmark --int8: fine-tune and ensemble rows '<slot>_int8', the cache keeps float16, the shipped key
    names the row of the model that shipped."""
    import json

    d = _tweeteval_dir(tmp_path)
    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(text_benchmark, "STORE", tmp_path / "results.json")
    monkeypatch.setitem(text_benchmark.GRID_OVERRIDES, "tweeteval",
                        {"finetune": [{"train_layers": 1, "epochs": 1, "max_length": 12, "batch_size": 8}]})
    text_benchmark.main(["--data", str(d), "--datasets", "tweeteval", "--models", "tfidf_lr,finetune,ensemble",
                         "--int8", "--ship", "--markdown", str(tmp_path / "r.md")])
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {"tweeteval/tfidf_lr", "tweeteval/finetune_int8", "tweeteval/ensemble_int8"} <= set(rows)
    assert "tweeteval/finetune" not in rows and f"tweeteval/{rows['tweeteval/shipped']}" in rows
    cached = TextEmotionClassifier.load(tmp_path / "cache" / "text_models" / "tweeteval" / "finetune.json")
    assert cached.backend.storage == "float16"
    shipped = TextEmotionClassifier.load(tmp_path / "src" / "emotionlab" / "text" / "weights" / "tweeteval.json")
    assert shipped.card["test"]["accuracy"] == rows[f"tweeteval/{rows['tweeteval/shipped']}"]["accuracy"]
    assert "| tweeteval | finetune_int8 |" in (tmp_path / "r.md").read_text()


def test_ensemble_of_finetunes_runs_shared_frozen_layers_once(monkeypatch):
    """Fine-tunes sharing frozen layers compute them once in an ensemble, with the same probabilities."""
    from emotionlab.text import models as tm

    texts = ["so happy today", "great joy", "i am sad", "tears and grief", "meh"]
    y = np.array([0, 0, 1, 1, 1])
    fts = [TextEmotionClassifier("finetune", train_layers=k, epochs=1, max_length=12, batch_size=2, seed=k)
           .fit(texts, y, ["joy", "sadness"]) for k in (1, 2)]
    deep = TextEmotionClassifier("finetune", train_layers=6, epochs=1, max_length=12, batch_size=2)
    deep.fit(texts, y, ["joy", "sadness"])  # every layer tuned: nothing to share
    lr = TextEmotionClassifier("tfidf_lr", C=1.0).fit(texts * 3, np.tile(y, 3), ["joy", "sadness"])
    members, weights = [lr, *fts, deep], [0.1, 0.4, 0.3, 0.2]
    separate = sum(w * m.predict_proba(texts) for m, w in zip(members, weights))
    calls = []
    real = tm._FineTune.shared_scores
    monkeypatch.setattr(tm._FineTune, "shared_scores",
                        staticmethod(lambda bs, t: calls.append(len(bs)) or real(bs, t)))
    shared = TextEmotionClassifier.ensemble(members, weights).predict_proba(texts)
    assert calls == [2]  # the two partly frozen fine-tunes together; the 6-layer one and tfidf_lr on their own
    assert np.abs(shared - separate).max() < 1e-6
    # the trunk runs the layers frozen in both (4 of 6), each tail the rest of its own
    assert fts[0].backend.n_frozen == 5 and fts[1].backend.n_frozen == 4 and deep.backend.n_frozen == 0
    assert len(tm.encoder_view(fts[1].backend.enc, 4, None, embed=False).encoder.layer) == 2
    assert len(fts[1].backend.enc.encoder.layer) == 6  # views leave the model itself untouched
    # different max_length: different tokens, so no sharing
    other = TextEmotionClassifier("finetune", train_layers=1, epochs=1, max_length=8, batch_size=2)
    other.fit(texts, y, ["joy", "sadness"])
    assert not fts[0].backend._shares_frozen(other.backend, 5)
    with pytest.raises(ValueError, match="do not share"):
        tm._FineTune.shared_scores([fts[0].backend, other.backend], texts)

"""The scikit-learn face of the text models: parameters, clone, fit on labels, predict shapes, ensembles, MiniLM."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from emotionlab.text import TextEmotionClassifier, TextEnsemble

from test_text import LABELS, make_corpus  # one learnable corpus for the text tests

OBVIOUS = ["so happy and wonderful, i love it", "i cry, so sad and lonely", "furious, i hate this rage"]


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(90, 0), make_corpus(30, 1)


def test_init_only_stores_its_arguments():
    clf = TextEmotionClassifier("tfidf_lr", name="mine", C=2.0, min_df=1)
    assert vars(clf) == {"kind": "tfidf_lr", "name": "mine", "params": {"C": 2.0, "min_df": 1}}
    assert clf.get_params() == {"kind": "tfidf_lr", "name": "mine", "C": 2.0, "min_df": 1}
    assert TextEmotionClassifier().get_params() == {"kind": "tfidf_lr", "name": None}
    typo = TextEmotionClassifier("bert_xxl")  # no validation in __init__ (scikit-learn's rule) ...
    with pytest.raises(ValueError, match="unknown text model kind 'bert_xxl'"):  # ... fit says what is wrong
        typo.fit(["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="not fitted"):
        clf.predict_proba(["hello"])


def test_set_params_and_clone(corpus):
    (tr, ytr), (va, yva) = corpus
    clf = TextEmotionClassifier("tfidf_lr", name="lr", C=4.0).fit(tr, ytr, LABELS)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy.params is not clf.params
    assert copy.labels == [] and not hasattr(copy, "classes_")  # unfitted
    assert np.array_equal(copy.fit(tr, ytr, LABELS).predict_proba(va), clf.predict_proba(va))
    assert copy.set_params(C=0.01, name="weak") is copy
    assert copy.get_params()["C"] == 0.01 and copy.name == "weak" and clf.params["C"] == 4.0
    copy.fit(tr, ytr, LABELS)  # the new C takes effect at the next fit
    assert copy.backend.head.C == 0.01
    weak, strong = copy.predict_proba(va).max(1).mean(), clf.predict_proba(va).max(1).mean()
    assert weak < strong  # heavier regularization: less confident
    with pytest.raises(ValueError, match="invalid parameter 'C'"):
        TextEnsemble([clf]).set_params(C=1.0)


def test_fit_infers_classes_from_y_and_columns_follow_classes(corpus):
    (tr, ytr), (va, yva) = corpus
    names = np.asarray(LABELS)
    by_name = TextEmotionClassifier("naive_bayes").fit(tr, names[ytr])  # y holds label names
    assert by_name.classes_.tolist() == ["anger", "joy", "sadness"]  # sorted, as scikit-learn does
    assert by_name.labels == ["anger", "joy", "sadness"]
    by_id = TextEmotionClassifier("naive_bayes").fit(tr, ytr, LABELS)  # ids + names in a chosen order
    assert by_id.classes_.tolist() == LABELS
    p_name, p_id = by_name.predict_proba(va), by_id.predict_proba(va)
    for j, lab in enumerate(by_name.classes_):  # same model, columns in each one's classes_ order
        assert np.allclose(p_name[:, j], p_id[:, LABELS.index(lab)], atol=1e-6)
    assert by_name.predict(OBVIOUS).tolist() == ["joy", "sadness", "anger"]
    assert by_name.score(va, names[yva]) >= 0.8  # ClassifierMixin.score: accuracy on label names
    numbers = TextEmotionClassifier("naive_bayes").fit(tr, ytr + 10)  # any labels, not only 0..k-1
    assert numbers.classes_.tolist() == [10, 11, 12] and numbers.predict(OBVIOUS[:1]).tolist() == [10]
    with pytest.raises(ValueError, match=r"labels \['fear'\] in y are not among"):
        TextEmotionClassifier("naive_bayes").fit(tr[:3], ["joy", "fear", "joy"], LABELS)
    with pytest.raises(ValueError, match="not one string"):
        TextEmotionClassifier("naive_bayes").fit("one text", ["joy"])
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        TextEmotionClassifier("naive_bayes").fit(tr[:3], ["joy", "joy"])


def test_multi_label_fit_without_names(corpus):
    (tr, ytr), _ = corpus
    y = np.eye(3, dtype=np.uint8)[ytr]
    y[::5, 1] = 1  # some texts carry two labels
    clf = TextEmotionClassifier("tfidf_lr").fit(tr, y)
    assert clf.multi_label and clf.classes_.tolist() == [0, 1, 2]
    d = clf.predict(OBVIOUS)
    assert d.shape == (3, 3) and d.dtype == np.uint8 and d[0, 0] == 1 and d[2, 2] == 1


def test_predict_shapes_and_call_format(corpus):
    (tr, ytr), (va, _) = corpus
    clf = TextEmotionClassifier("tfidf_lr", name="lr").fit(tr, ytr, LABELS)
    p = clf.predict_proba(va)
    assert p.shape == (30, 3) and p.dtype == np.float32 and np.allclose(p.sum(1), 1, atol=1e-5)
    pred = clf.predict(va)
    assert pred.shape == (30,) and pred.tolist() == [LABELS[i] for i in p.argmax(1)]
    assert clf.predict_proba([]).shape == (0, 3)
    one = clf("so happy and wonderful, i love it")  # one text: still a list with one prediction list
    assert len(one) == 1 and [r["label"] for r in one[0]][0] == "joy"
    assert all(set(r) == {"label", "score"} and type(r["label"]) is str and type(r["score"]) is float
               for r in one[0])
    assert sorted(r["label"] for r in one[0]) == sorted(LABELS)
    assert [r["score"] for r in one[0]] == sorted((r["score"] for r in one[0]), reverse=True)
    assert np.isclose(sum(r["score"] for r in one[0]), 1, atol=1e-5)
    many = clf(OBVIOUS, top_k=1)
    assert [[r["label"] for r in rows] for rows in many] == [["joy"], ["sadness"], ["anger"]]
    assert many[1][0]["score"] == pytest.approx(float(clf.predict_proba(OBVIOUS[1:2])[0, 1]))
    with pytest.raises(ValueError, match="empty or whitespace"):
        clf(["fine", "  "])


def test_ensemble_class(corpus, tmp_path):
    (tr, ytr), (va, yva) = corpus
    lr = TextEmotionClassifier("tfidf_lr", name="lr").fit(tr, ytr, LABELS)
    nb = TextEmotionClassifier("naive_bayes", name="nb").fit(tr, ytr, LABELS)
    ens = TextEmotionClassifier.ensemble([lr, nb], [0.7, 0.3], name="both")
    assert isinstance(ens, TextEnsemble) and isinstance(ens, TextEmotionClassifier) and ens.kind == "ensemble"
    assert ens.get_params(deep=False) == {"members": [lr, nb], "weights": [0.7, 0.3], "name": "both"}
    want = 0.7 * lr.predict_proba(va) + 0.3 * nb.predict_proba(va)
    assert np.allclose(ens.predict_proba(va), want, atol=1e-6)
    assert ens.predict(va).tolist() == [LABELS[i] for i in want.argmax(1)]
    assert ens(OBVIOUS[:1])[0][0]["label"] == "joy"
    # the scikit-learn way: unfitted members, fit fits them (in place), clone gives an unfitted copy
    fresh = clone(ens)
    assert all(a is not b and not b.labels for a, b in zip(ens.members, fresh.members))
    assert fresh.fit(tr, ytr, LABELS) is fresh and all(m.labels == LABELS for m in fresh.members)
    assert np.allclose(fresh.predict_proba(va), ens.predict_proba(va), atol=1e-6)
    even = TextEnsemble([lr, nb])  # weights None: equal
    assert np.allclose(even.predict_proba(va), (lr.predict_proba(va) + nb.predict_proba(va)) / 2, atol=1e-6)
    assert even.set_params(weights=[1.0, 0.0]) is even
    assert np.allclose(even.predict_proba(va), lr.predict_proba(va), atol=1e-6)
    out = TextEmotionClassifier.load(ens.save(tmp_path / "ens"))
    assert isinstance(out, TextEnsemble) and out.weights == [0.7, 0.3] and [m.name for m in out.members] == ["lr", "nb"]
    assert np.allclose(out.predict_proba(va), ens.predict_proba(va), atol=1e-3)  # tfidf weights saved in float16
    other = TextEmotionClassifier("naive_bayes").fit(tr, np.asarray(LABELS)[ytr])  # sorted label order
    with pytest.raises(ValueError, match="disagree on labels"):
        TextEmotionClassifier.ensemble([lr, other])
    with pytest.raises(ValueError, match="2 weights for 1 ensemble members"):
        TextEnsemble.of([lr], [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one member"):
        TextEnsemble.of([])


def test_minilm_frozen_layers_shared_and_views_leave_the_model_alone():
    """Two fine-tune encoders hold one copy of the frozen MiniLM; a sliced view equals the full pass."""
    import torch

    from emotionlab.text.minilm import encoder_view, load_encoder

    tok, a, tuned = load_encoder(2)
    _, b, _ = load_encoder(1)
    assert tuned == ["encoder.layer.4.", "encoder.layer.5."]
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa["encoder.layer.3.output.dense.weight"] is pb["encoder.layer.3.output.dense.weight"]  # both frozen
    assert pa["embeddings.word_embeddings.weight"] is pb["embeddings.word_embeddings.weight"]
    assert pa["encoder.layer.4.output.dense.weight"] is not pb["encoder.layer.4.output.dense.weight"]
    assert [n for n, q in pa.items() if q.requires_grad] == [n for n in pa if n.startswith(tuple(tuned))]
    layers = list(a.encoder.layer)
    trunk, tail = encoder_view(a, 0, 4, embed=True), encoder_view(a, 4, None, embed=False)
    assert list(a.encoder.layer) == layers and len(trunk.encoder.layer) == 4 and tail.encoder.layer[0] is layers[4]
    batch = tok(["so happy today", "a longer sentence about being sad and alone"], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        a.eval()
        full = a(**batch).last_hidden_state
        h = trunk(**batch).last_hidden_state
        split = tail(inputs_embeds=h, attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.allclose(full, split, atol=1e-5)

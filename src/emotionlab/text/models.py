"""Text emotion classifiers behind one interface (facade: the code lives in one module per part).

Kinds: ``naive_bayes`` (NLTK, word presence, seed 000), ``tfidf_lr`` (word + char n-gram TF-IDF, logistic
regression), ``tfidf_svm`` (the same features, a linear SVM whose scores are turned into probabilities by a
temperature / Platt scaling fitted on cross-validated training scores), ``embed_lr`` / ``embed_mlp`` (MiniLM
sentence embeddings + a trained head), ``finetune`` (MiniLM's top layers tuned) and ``ensemble`` (weighted
average of member probabilities, weights tuned on validation). Multi-label sets (GoEmotions) use one sigmoid per
class and per-class thresholds tuned on the validation split.

Where things live: ``classifier`` (``TextEmotionClassifier``, the scikit-learn estimator, save / load),
``ensemble`` (``TextEnsemble``), ``backends/<kind>.py`` (one per kind), ``minilm`` (the MiniLM encoder the
fine-tunes share). This module re-exports them so ``from emotionlab.text.models import ...`` keeps working.
"""
from __future__ import annotations

from .backends import BACKENDS as _BACKENDS
from .backends.base import _Backend, _dense_linear, _Linear, _sigmoid, _softmax, _val_score, tune_thresholds
from .backends.embed_lr import _EmbedLR
from .backends.embed_mlp import _EmbedMLP
from .backends.finetune import _FineTune, _from_int8_rows, _int8_rows
from .backends.naive_bayes import _NaiveBayes
from .backends.tfidf_lr import _TfidfLR, _word_ngrams
from .backends.tfidf_svm import _CalibratedSVM, _TfidfSVM
from .classifier import TextEmotionClassifier
from .ensemble import TextEnsemble, _member_probas
from .minilm import _FROZEN_MINILM, encoder_view, load_encoder, share_frozen
from .store import FORMAT_VERSION, KINDS, read_model_files, write_model_files

__all__ = ["FORMAT_VERSION", "KINDS", "TextEmotionClassifier", "TextEnsemble", "encoder_view", "load_encoder",
           "read_model_files", "write_model_files",
           "share_frozen", "tune_thresholds", "_BACKENDS", "_Backend", "_CalibratedSVM", "_EmbedLR", "_EmbedMLP",
           "_FROZEN_MINILM", "_FineTune", "_Linear", "_NaiveBayes", "_TfidfLR", "_TfidfSVM", "_dense_linear",
           "_from_int8_rows", "_int8_rows", "_member_probas", "_sigmoid", "_softmax", "_val_score", "_word_ngrams"]

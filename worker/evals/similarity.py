"""Text similarity scores in [0, 1], each from a well-kept library (OpenAI's `text_similarity`
metrics): sacrebleu's sentence BLEU, nltk's GLEU and METEOR, Google's rouge-score, rapidfuzz.

METEOR runs with exact and Porter-stem matching only: its synonym stage needs the WordNet corpus,
which is a download, and nothing here reaches the internet at run time.
"""

from collections.abc import Callable
from functools import cache
from typing import Any


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: no synonyms, so METEOR matches exact words and stems."""

    def synsets(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _words(text: str) -> list[str]:
    return text.lower().split()


def fuzzy_match(output: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils

    return float(fuzz.WRatio(output, reference, processor=utils.default_process)) / 100


def bleu(output: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(output, [reference]).score) / 100


def gleu(output: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    return float(sentence_gleu([_words(reference)], _words(output)))


def meteor(output: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    if not output.strip() or not reference.strip():
        return 0.0
    return float(meteor_score([_words(reference)], _words(output), wordnet=_NoSynonyms()))


@cache
def _rouge(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def rouge(kind: str) -> Callable[[str, str], float]:
    """ROUGE-N (``rouge1`` … ``rouge5``) or ROUGE-L, as the F-measure."""

    def score(output: str, reference: str) -> float:
        return float(_rouge(kind).score(reference, output)[kind].fmeasure)

    return score


SCORERS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": rouge("rougeL"),
}


def similarity(metric: str, output: str, reference: str) -> float:
    """The ``metric`` score of ``output`` against ``reference``, between 0 and 1."""
    return max(0.0, min(1.0, SCORERS[metric](output, reference)))

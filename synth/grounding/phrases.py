"""Noun phrases of English captions, offline: a lexicon tagger over WordNet 3.0 (Debian's wordnet-base) and NLTK's
RegexpParser as the chunker.

Why this parser: spaCy, Stanza, Flair and NLTK's own perceptron tagger all need a model download, which cannot
happen here (and should not at run time anywhere). WordNet ships on disk with the part-of-speech of every open-class
English word and, in `cntlist.rev`, how often each sense was tagged in SemCor, which is a usable unigram tagger;
closed-class words (determiners, prepositions, auxiliaries…) are a short list below. A few context rules fix the
commonest ambiguities of captions ("a dog *runs* on the beach"). Coarse next to a neural parser, but captions are
short and mostly noun phrases; the detector's threshold, not the chunker, decides what becomes a box.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from nltk.chunk import RegexpParser

WORDNET_DIR = "/usr/share/wordnet"
_POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_SS_TYPE = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
_SUFFIXES = {  # WordNet's morphy detachment rules
    "n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y")],
    "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}
CLOSED = {
    "DT": "a an the this that these those some any each every no another both either neither all several many few",
    "PRP$": "his her its their our my your whose",
    "PR": "i you he she it we they me him us them who whom which what there here someone something",
    "IN": "in on at of with by for from to under over near behind beside besides next into onto through across "
          "around between above below along against inside outside during without among beneath upon toward "
          "towards via like while than as off out up down after before",
    "CC": "and or but nor yet so",
    "AUX": "is are was were be been being am has have had do does did can could will would may might shall should "
           "must not",
    "RB": "very too also just only really quite then now",
}
_NUMBERS = set("one two three four five six seven eight nine ten eleven twelve dozen".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")
GRAMMAR = r"NP: {<DT|PRP\$>?<CD>*<JJ>*<NN>*<NN>}"
# Heads that name the picture, not a thing in it (caption boilerplate of web alt text).
STOP_HEADS = frozenset("image photo photograph picture pic illustration stock view background close closeup "
                       "close-up vector set style design type kind lot top side front bottom day night time way "
                       "color colour shot scene front royalty free".split())


class Lexicon:
    """Open-class parts of speech and SemCor sense counts per (lemma, pos) from WordNet's own files."""

    def __init__(self, wordnet_dir: str = WORDNET_DIR):
        root = Path(wordnet_dir)
        if not (root / "index.noun").exists():
            raise FileNotFoundError(f"{root / 'index.noun'} not found: install Debian's wordnet-base")
        self.lemmas: dict[str, set[str]] = {}
        self.exceptions: dict[str, dict[str, str]] = {}
        for pos, name in _POS_FILES.items():
            words = set()
            with open(root / f"index.{name}", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line and not line.startswith(" "):
                        words.add(line.split(" ", 1)[0])
            self.lemmas[pos] = words
            exc: dict[str, str] = {}
            path = root / f"{name}.exc"
            if path.exists():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        exc.setdefault(parts[0], parts[1])
            self.exceptions[pos] = exc
        self.counts: Counter[tuple[str, str]] = Counter()
        cnt = root / "cntlist.rev"
        if cnt.exists():
            for line in cnt.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 3 and "%" in parts[0]:
                    lemma, sense = parts[0].split("%", 1)
                    pos = _SS_TYPE.get(sense[:1])
                    if pos:
                        self.counts[(lemma, pos)] += int(parts[2])

    def morphy(self, word: str, pos: str) -> str | None:
        """The WordNet lemma of `word` as part of speech `pos`, or None."""
        if word in self.exceptions[pos]:
            return self.exceptions[pos][word]
        if word in self.lemmas[pos]:
            return word
        for suffix, repl in _SUFFIXES[pos]:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                base = word[: -len(suffix)] + repl
                if base in self.lemmas[pos]:
                    return base
        return None

    def parts(self, word: str) -> dict[str, int]:
        """{pos: SemCor count + 1} for every part of speech WordNet knows `word` as."""
        out = {}
        for pos in _POS_FILES:
            lemma = self.morphy(word, pos)
            if lemma is not None:
                out[pos] = self.counts[(lemma, pos)] + 1
        return out


@lru_cache(maxsize=2)
def lexicon(wordnet_dir: str = WORDNET_DIR) -> Lexicon:
    return Lexicon(wordnet_dir)


_CLOSED = {w: tag for tag, words in CLOSED.items() for w in words.split()}


def tag(tokens: list[str], lex: Lexicon) -> list[tuple[str, str]]:
    """Penn-like tags: DT PRP$ PR IN CC AUX RB CD NN JJ VB (unknown words are nouns)."""
    out: list[tuple[str, str]] = []
    lower = [t.lower() for t in tokens]
    for i, word in enumerate(lower):
        prev = out[-1][1] if out else None
        nxt = _CLOSED.get(lower[i + 1]) if i + 1 < len(lower) else None
        if word in _CLOSED:
            out.append((tokens[i], _CLOSED[word]))
            continue
        if word.isdigit() or word in _NUMBERS:
            out.append((tokens[i], "CD"))
            continue
        parts = lex.parts(word)
        if not parts:
            out.append((tokens[i], "NN"))
            continue
        nominal = {p: c for p, c in parts.items() if p in ("n", "a")}
        if word.endswith("ing") and "v" in parts:
            # "a man riding a horse" (a verb) vs "the sitting room" (a modifier after a determiner).
            out.append((tokens[i], "JJ" if prev in ("DT", "PRP$", "JJ", "CD") else "VB"))
            continue
        if prev in ("DT", "PRP$", "JJ", "CD", "IN") and nominal:
            parts = nominal  # after a determiner, adjective, number or preposition: a noun phrase goes on
        elif (prev in ("NN", "PR") and "v" in parts and word.endswith("s") and lex.morphy(word, "v") != word
              and nxt in ("DT", "PRP$", "IN", "RB") ):
            parts = {"v": parts["v"]}  # an inflected verb after the subject: "a dog *chases* a cat"
        best = max(parts, key=lambda p: (parts[p], p == "n"))
        out.append((tokens[i], {"n": "NN", "a": "JJ", "v": "VB", "r": "RB"}[best]))
    return out


_PARSER = RegexpParser(GRAMMAR)


def noun_phrases(caption: str, lex: Lexicon | None = None, stop_heads: frozenset[str] = STOP_HEADS,
                 max_words: int = 5) -> list[str]:
    """Distinct noun phrases of `caption` in order, lower case, without determiners ("a red car" → "red car")."""
    lex = lex or lexicon()
    tokens = _WORD.findall(caption or "")
    if not tokens:
        return []
    tree = _PARSER.parse(tag(tokens, lex))
    seen: dict[str, None] = {}
    for sub in tree.subtrees(lambda t: t.label() == "NP"):
        words = [w.lower() for w, t in sub.leaves() if t not in ("DT", "PRP$")]
        words = words[-max_words:]
        if not words or words[-1] in stop_heads or len(words[-1]) < 2:
            continue
        seen.setdefault(" ".join(words), None)
    return list(seen)

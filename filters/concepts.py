"""Concept metadata (WordNet 3.0 noun lemmas + user entries) and MetaCLIP-style substring matching with Aho-Corasick."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import ahocorasick

WORDNET_DIR = "/usr/share/wordnet"
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space, padded with spaces: entries match whole words."""
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


def wordnet_nouns(wordnet_dir: str = WORDNET_DIR) -> list[str]:
    """Every noun lemma of WordNet (synonyms are lemmas too); multiword lemmas with spaces."""
    path = Path(wordnet_dir) / "index.noun"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install Debian's wordnet-base (scripts/setup.sh does)")
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" ") or not line.strip():
                continue  # the license header is indented
            out.append(line.split(" ", 1)[0].replace("_", " "))
    return out


def load_entries(wordnet_dir: str | None, extra_files: Iterable[str] = (), min_chars: int = 3) -> list[str]:
    """The metadata: normalised, de-duplicated entries; single words shorter than `min_chars` are left out."""
    raw = wordnet_nouns(wordnet_dir) if wordnet_dir else []
    for file in extra_files:
        raw.extend(line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip())
    entries = set()
    for entry in raw:
        norm = normalize(entry).strip()
        if norm and (" " in norm or len(norm) >= min_chars):
            entries.add(norm)
    return sorted(entries)


class ConceptMatcher:
    """Finds every metadata entry that occurs as a whole-word substring of a caption."""

    def __init__(self, entries: Iterable[str]):
        self.automaton = ahocorasick.Automaton()
        n = 0
        for entry in entries:
            self.automaton.add_word(f" {entry} ", entry)
            n += 1
        self.size = n
        self.automaton.make_automaton()

    def match(self, caption: str) -> list[str]:
        return sorted({entry for _, entry in self.automaton.iter(normalize(caption))})

"""User-facing text cites the papers or the docs, never the internal design document.

The library (`keras_nc/`), the recipes (`recipes/`), the documentation (`docs/`)
and `README.md` are read line by line: the word "SPEC" (a file users do not
have) must not appear; cite arXiv 2409.16767 / 2406.03999, the papers of
FixMatch and FreeMatch, Keras' documentation or a docs/ page instead. The
former `--fairness-sign spec` spelling of the semi-supervised recipe (now
`negated`) may appear only in its deprecated-alias table,
`DEPRECATED_FAIRNESS_SIGNS`. The test is backend-independent.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED = ("keras_nc", "recipes", "studies", "docs", "README.md")
SPEC_WORD = re.compile(r"\bSPEC\b")
# `--fairness-sign spec`, `fairness_sign="spec"`, "spec-sign" (study cells), and
# a bare "spec" string (e.g. an argv entry of a study record).
FORMER_FAIRNESS_SPELLING = re.compile(
    r"spec[-_]sign|fairness[-_]sign\W{0,4}spec\b|[\"']spec[\"']", re.IGNORECASE
)
ALLOWED = "DEPRECATED_FAIRNESS_SIGNS = {"  # the deprecated alias itself


def _files():
    for entry in SCANNED:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield path
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(names):
                yield os.path.join(folder, name)


def _text_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError:  # images and other binary files
        return []


def _offending(pattern, allowed=None):
    found = []
    for path in _files():
        relative = os.path.relpath(path, ROOT)
        if pattern.search(relative):
            found.append(f"{relative} (file name)")
        for number, line in enumerate(_text_lines(path), 1):
            if pattern.search(line) and not (allowed and allowed in line):
                found.append(f"{relative}:{number}: {line.strip()[:120]}")
    return found


def test_patterns_find_what_they_are_meant_to_find():
    assert SPEC_WORD.search("as SPEC 3.2 writes") and not SPEC_WORD.search("spectrum, SPECS")
    for text in ('"--fairness-sign", "spec"', "--fairness-sign spec", 'fairness_sign="spec"'):
        assert FORMER_FAIRNESS_SPELLING.search(text), text
    assert FORMER_FAIRNESS_SPELLING.search("grid-40-freematch-spec-sign-s0.json")
    assert not FORMER_FAIRNESS_SPELLING.search("compute_output_spec(inputs), input_spec")
    assert not FORMER_FAIRNESS_SPELLING.search('fairness_sign="negated"')


def test_no_spec_citation_in_user_facing_text():
    found = _offending(SPEC_WORD)
    assert not found, "cite the paper or a docs/ page instead of SPEC:\n" + "\n".join(found)


def test_former_fairness_sign_spelling_only_in_its_deprecated_alias():
    found = _offending(FORMER_FAIRNESS_SPELLING, allowed=ALLOWED)
    assert not found, "use `--fairness-sign negated`:\n" + "\n".join(found)

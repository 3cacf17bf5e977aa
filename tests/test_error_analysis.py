import re

import pandas as pd

from asr_helpers.report import error_analysis
from asr_helpers.report.error_analysis import Segment


def test_character_alignment_finds_each_edit():
    assert error_analysis.align_chars("the cat", "the hat") == [Segment("equal", "the ", "the "),
                                                               Segment("substitute", "c", "h"), Segment("equal", "at", "at")]
    kinds = [s.kind for s in error_analysis.align_chars("on a  mat", "on mats")]
    assert kinds.count("delete") == 1 and kinds.count("insert") == 1  # "a " lost, "s" added; double space is one
    assert error_analysis.align_chars("", "hi") == [Segment("insert", "", "hi")]
    assert error_analysis.align_chars("hi", "") == [Segment("delete", "hi", "")]
    assert error_analysis.align_chars("", "") == []


def test_edit_counts_rank_substitutions_deletions_and_insertions():
    counts = error_analysis.edit_counts([("the cat", "the hat"), ("a cat", "a hat"), ("on it", "onit"), ("no", "nos")])
    assert counts.values.tolist() == [["substitution", "c\u2192h", 2], ["deletion", "\u2423", 1], ["insertion", "s", 1]]
    top = error_analysis.top_edits(counts, per_kind=1)
    assert list(top) == ["substitution", "deletion", "insertion"] and top["insertion"].edit.tolist() == ["s"]
    empty = error_analysis.top_edits(error_analysis.edit_counts([("same", "same")]))
    assert all(frame.empty for frame in empty.values())


def test_cer_per_speaker_is_sorted_worst_first_and_named(tmp_path):
    recogs = pd.DataFrame({"id": ["1-2-0000", "1-2-0001", "7-8-0000"], "reference": ["abcd", "ef", "abcd"],
                           "hypothesis": ["abcd", "ex", "abxx"]})
    (tmp_path / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET |MINUTES| NAME\n1    | F | dev-clean | 1.0 | flite slt\n"
                                           "7    | M | dev-clean | 2.0 | |CBW|Simon\n")
    names = error_analysis.speaker_names(tmp_path)
    assert names == {"1": "flite slt", "7": "CBW|Simon"}
    table = error_analysis.speaker_cer(recogs, names)
    assert table.values.tolist() == [["7", "CBW|Simon", 1, 0.5], ["1", "flite slt", 2, 1 / 6]]
    assert error_analysis.speaker_names(tmp_path / "nowhere") == {} and error_analysis.speaker_names(None) == {}
    assert error_analysis.speaker_cer(recogs.iloc[:0]).empty


def test_aligned_html_keeps_both_lines_the_same_width_and_colours_errors():
    html = error_analysis.aligned_html("the cat sat <b>", "teh cats at <b>")
    ref_line, hyp_line = html.split("\n")
    visible = [re.sub(r"<[^>]+>", "", line) for line in (ref_line, hyp_line)]
    assert len(visible[0]) == len(visible[1])
    assert "&lt;b&gt;" in html and "background:#a6dba0" in html and "background:#f4a6a6" in html
    long = error_analysis.aligned_html("word " * 40, "word " * 40, width=50)
    assert long.count("<b>ref</b>") == 4  # 199 characters wrap into four ref/hyp pairs

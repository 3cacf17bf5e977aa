"""The course's checklist for one run, generated from what the run folder actually holds.

The course deducts points when the logs miss a required item and adds them for bonus tasks;
a grader should not have to hunt for either. Each check looks at the run's files (never at
what the notebook meant to log) and names the report section that shows the evidence.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from asr_helpers.training.rundir import RunDir
from asr_helpers.training.tracking import read_jsonl

# Report sections (the headings of notebooks/05_report.ipynb) that evidence points to.
CURVES = "Training curves"
SAMPLES = "Text samples"
SPECTROGRAMS = "Spectrograms"
DECODERS = "Decoders per split"
LM_GRID = "Language model weights"
ABLATIONS = "Ablations"
ATTENTION = "Attention maps"
SECTIONS = (CURVES, SAMPLES, SPECTROGRAMS, DECODERS, LM_GRID, ABLATIONS, ATTENTION)


@dataclass(frozen=True)
class Check:
    """One checklist line: what the course asks, whether this run shows it, and where."""

    item: str
    kind: str        # "required" (points deducted when missing) or "bonus"
    present: bool
    evidence: str    # what was found, or what is missing
    sections: tuple[str, ...]


def section_link(title: str) -> str:
    """An HTML link to a report heading (nbconvert's anchor: spaces become dashes)."""
    return f'<a href="#{html.escape(title.replace(" ", "-"))}">{html.escape(title)}</a>'


def _count(records: list[dict], key: str) -> int:
    return sum(1 for r in records if r.get("kind") == "train" and r.get(key) is not None)


def _logged_checks(files: RunDir) -> list[Check]:
    """The course's required log items (up to -2 points when any is missing)."""
    history = read_jsonl(files.history)
    tables = [t for t in read_jsonl(files.samples) if t.get("rows") and {"target", "prediction", "cer", "wer"} <= set(t["rows"][0])]
    train_spec = files.media_files("train/spectrogram", "png")
    dev_spec = files.media_files("eval/*/spectrogram", "png")
    augmented = files.media_files("train/augmented_audio", "wav") + files.media_files("train/spectrogram_augmented", "png")
    eval_losses = sum(1 for r in history if r.get("kind", "").startswith("eval/") and r.get("loss") is not None)
    return [
        Check("text samples with target, prediction, CER and WER", "required", bool(tables),
              f"{len(tables)} sample tables in {files.samples.name}" if tables else f"no sample table in {files.samples.name}",
              (SAMPLES,)),
        Check("spectrograms of train and validation utterances", "required", bool(train_spec and dev_spec),
              f"{len(train_spec)} train and {len(dev_spec)} dev spectrogram images in media/", (SPECTROGRAMS,)),
        Check("gradient norm", "required", _count(history, "grad_norm") > 0,
              f"{_count(history, 'grad_norm')} logged values", (CURVES,)),
        Check("learning rate", "required", _count(history, "lr") > 0, f"{_count(history, 'lr')} logged values", (CURVES,)),
        Check("loss (train and dev)", "required", _count(history, "loss") > 0 and eval_losses > 0,
              f"{_count(history, 'loss')} train and {eval_losses} dev values", (CURVES,)),
        Check("audio or spectrograms after augmentation", "required", bool(augmented),
              f"{len(augmented)} augmented sounds and spectrograms in media/", (SPECTROGRAMS,)),
    ]


def augmentation_types(augment) -> list[str]:
    """The augmentation types a run's ``augment`` setting applies (wave augmentations and SpecAugment)."""
    from asr_helpers.data.augment import PRESETS
    from asr_helpers.data.spec_augment import SPEC_AUGMENT_PRESETS
    specs = PRESETS.get(augment, []) if isinstance(augment, str) else list(augment or [])
    names = [spec["name"] for spec in specs if isinstance(spec, dict) and "name" in spec]
    if isinstance(augment, str) and SPEC_AUGMENT_PRESETS.get(augment):
        names.append("SpecAugment")
    return names


def _decoder_wers(files: RunDir) -> dict[str, dict[str, float]]:
    """``{decoder: {split: wer}}`` from ``decoding.json``."""
    from asr_helpers.report.summary import decoder_results
    table: dict[str, dict[str, float]] = {}
    for row in decoder_results(files.path).itertuples():
        table.setdefault(row.decoder, {})[row.split] = row.wer
    return table


def _better(table: dict[str, dict[str, float]], better: str, than: str) -> tuple[bool, str]:
    """Whether decoder ``better`` has a lower WER than ``than`` on every split both decoded."""
    splits = sorted(set(table.get(better, {})) & set(table.get(than, {})))
    if not splits:
        return False, f"no split decoded with both {than} and {better}"
    wins = [s for s in splits if table[better][s] < table[than][s]]
    detail = ", ".join(f"{s} {table[than][s]:.3f} -> {table[better][s]:.3f}" for s in splits)
    return len(wins) == len(splits), f"WER {than} -> {better}: {detail}"


def _method_checks(files: RunDir, ablation_runs: Sequence[str]) -> list[Check]:
    config, decoders = files.read_config(), _decoder_wers(files)
    kinds = augmentation_types(config.get("augment"))
    beam_ok, beam_detail = _better(decoders, "beam", "greedy")
    lm_ok, lm_detail = _better(decoders, "lm", "beam" if "beam" in decoders else "greedy")
    finished = [RunDir.named(n) for n in ablation_runs if RunDir.named(n).finished]
    tokenizers = {run.name: run.read_config().get("tokenizer", "char") for run in finished}
    bpe_ablation = "bpe" in tokenizers.values() and "char" in tokenizers.values()
    attention = files.media_files("*attention*", "png")
    return [
        Check("at least 4 augmentation types", "required", len(kinds) >= 4,
              f"augment={config.get('augment')!r}: {', '.join(kinds) or 'none'}", (SPECTROGRAMS,)),
        Check("own beam search better than argmax", "required", beam_ok, beam_detail, (DECODERS,)),
        Check("external LM at inference, shown to help (+1)", "bonus", lm_ok, lm_detail, (DECODERS, LM_GRID)),
        Check("BPE tokenisation with an ablation against characters (+1)", "bonus", bpe_ablation,
              ", ".join(f"{name}: {tok}" for name, tok in tokenizers.items()) or "no ablation run recorded",
              (ABLATIONS,)),
        Check("LAS attention model with attention maps (up to +3)", "bonus", bool(attention),
              f"{len(attention)} attention maps in media/" if attention else "no attention decoder in this run",
              (ATTENTION,)),
    ]


def course_checklist(run: Path, ablation_runs: Sequence[str] = ()) -> list[Check]:
    """Every required log item and bonus of the course, marked present or missing for ``run``."""
    files = RunDir(Path(run))
    return _logged_checks(files) + _method_checks(files, ablation_runs)


def checklist_html(checks: Sequence[Check]) -> str:
    """The checklist as an HTML table, present/missing in colour, linking to the sections that show each item."""
    rows = []
    for check in checks:
        status = ('<b style="color:#1a7f37">present</b>' if check.present else '<b style="color:#cf222e">missing</b>')
        where = ", ".join(section_link(s) for s in check.sections)
        cells = [status, html.escape(check.item), check.kind, html.escape(check.evidence), where]
        rows.append("<tr>" + "".join(f'<td style="text-align:left">{cell}</td>' for cell in cells) + "</tr>")
    missing = [c.item for c in checks if c.kind == "required" and not c.present]
    footer = (f"<p><b>Missing required items:</b> {html.escape('; '.join(missing))}.</p>" if missing
              else "<p>Every required item is present.</p>")
    header = "".join(f'<th style="text-align:left">{h}</th>' for h in ("status", "course item", "kind", "this run", "shown in"))
    return f'<table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>{footer}'

"""The paraphrase table per phrasing form (issue 28): each form of instructions as people type them
(avatarworld/phrasings.py: graded words, idioms, exclamation, comparison, hedging, described motions,
combinations), its train-split ("seen") phrasings against its held-out ones, on the evaluation clips whose
content the form can say.

    instructavatar train quality paraphrase --clips 48 [--forms all|none|graded,idiom,...] [--sample-seeds K]

For each form and clip the text is the clip's content (emotion, intensity, motions, timing) phrased in that form
from one split, drawn with a per-clip seed; the clip's audio, portrait and truth are the evaluation set's. The
summary table gives, per form, intensity accuracy, how often a level-3 clip was read as level 3, the mean level
error (read - asked) and AU_F1, seen vs held out, with the gaps the issue's acceptance checks (intensity within
0.05, AU_F1 within 0.03). The last column checks the level reported to users (engine/intensity_read.py: the
generator's intensity head on the emitted motion): how often it equals the asked level and the evaluators' read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..avatarworld import phrasings
from ..avatarworld.clips import Clip

INTENSITY_GAP = 0.05        # acceptance: held-out intensity accuracy within this of the seen phrasings'
AU_F1_GAP = 0.03            # and AU_F1 within this


def parse_forms(value: str) -> tuple[str, ...]:
    """--forms: "all", "none" or a comma list of phrasings.FORMS."""
    if value == "all":
        return phrasings.FORMS
    if value == "none":
        return ()
    forms = tuple(f.strip() for f in value.split(",") if f.strip())
    bad = [f for f in forms if f not in phrasings.FORMS]
    if bad or not forms:
        raise ValueError(f"--forms {value!r}: expected 'all', 'none' or a comma list of {phrasings.FORMS}")
    return forms


def form_text(form: str, split: str) -> Callable[[Clip, int], str | None]:
    """text_of(clip, i) for quality.model_output: the clip's content in `form` from `split` (None: not sayable)."""
    def text_of(clip: Clip, index: int) -> str | None:
        spec = clip.spec
        rng = np.random.default_rng([spec.seed % 2**32, 28, phrasings.FORMS.index(form)])
        emotion = None if spec.kind == "motion" else spec.emotion
        return phrasings.form_instruction(form, emotion, spec.intensity, spec.motions, rng, split,
                                          timing=spec.timing or None)
    return text_of


def clips_for(form: str, clips: list[Clip]) -> list[Clip]:
    """The clips whose content `form` can say (talk_neutral never: it has no instruction to phrase)."""
    return [c for c in clips if c.spec.kind != "talk_neutral" and form_text(form, "train")(c, 0) is not None]


def with_head_reads(pipe, produce, weights=None):
    """produce(i, clip) that also records the generator's intensity-head level of the emitted motion
    (engine/intensity_read.py) in reads[i]: how well the level reported to users agrees with the evaluators."""
    from ..engine.intensity_read import read_motion_level

    reads: dict[int, int | None] = {}

    def wrapped(i: int, clip: Clip):
        frames, motion = produce(i, clip)
        r = read_motion_level(pipe.backend, motion / pipe.scale, weights) if motion is not None else None
        reads[i] = None if r is None else r.level
        return frames, motion
    return wrapped, reads


def _stats(records: list[dict]) -> dict:
    def mean(key):
        v = [r[key] for r in records if r.get(key) is not None]
        return float(np.mean(v)) if v else None

    top = [r for r in records if r.get("intensity") == 3 and r.get("intensity_pred") is not None]
    err = [r["intensity_pred"] - r["intensity"] for r in records
           if r.get("intensity") is not None and r.get("intensity_pred") is not None]
    head = [r for r in records if r.get("intensity") is not None and r.get("head_level") is not None]
    agree = [r for r in head if r.get("intensity_pred") is not None]
    if not records:
        return {k: None for k in ("head_acc", "head_agrees", "au_f1", "au_emo", "intensity_acc", "level_error")} | {
            "samples": 0, "top_read": 0, "top_n": 0, "intensity_n": 0}
    return {"head_acc": float(np.mean([r["head_level"] == r["intensity"] for r in head])) if head else None,
            "head_agrees": float(np.mean([r["head_level"] == r["intensity_pred"] for r in agree])) if agree else None,
            "samples": len(records), "au_f1": mean("au_f1"), "au_emo": mean("au_emo"),
            "intensity_acc": mean("intensity_acc"), "top_read": sum(r["intensity_pred"] == 3 for r in top),
            "top_n": len(top), "level_error": float(np.mean(err)) if err else None,
            "intensity_n": len(err)}


def _f(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _gap(seen, held) -> float | None:
    return None if seen is None or held is None else held - seen


def _pool(s: dict, h: dict, key: str) -> float | None:
    v = [x[key] for x in (s, h) if x[key] is not None]
    return float(np.mean(v)) if v else None


def summary_table(results: dict[str, dict[str, list[dict]]]) -> tuple[str, dict]:
    """results[form][split] = per-clip records -> the markdown summary and its numbers."""
    head = ("| form | samples | intensity acc seen / held out (gap) | level 3 read as 3, seen / held out | "
            "level error seen / held out | AU_F1 seen / held out (gap) | within 0.05 / 0.03 | "
            "head level = asked / = evaluators' read |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---|---:|"]
    data = {}
    for form, by_split in results.items():
        s, h = _stats(by_split.get("train", [])), _stats(by_split.get("heldout", []))
        gi, ga = _gap(s["intensity_acc"], h["intensity_acc"]), _gap(s["au_f1"], h["au_f1"])
        ok_i = None if gi is None else gi >= -INTENSITY_GAP
        ok_a = None if ga is None else ga >= -AU_F1_GAP
        verdict = " / ".join("-" if ok is None else ("yes" if ok else "no") for ok in (ok_i, ok_a))
        lines.append(
            f"| {form} | {s['samples'] or h['samples']} | "
            f"{_f(s['intensity_acc'])} / {_f(h['intensity_acc'])} ({_f(gi, '{:+.3f}')}) | "
            f"{s['top_read']}/{s['top_n']} / {h['top_read']}/{h['top_n']} | "
            f"{_f(s['level_error'], '{:+.2f}')} / {_f(h['level_error'], '{:+.2f}')} | "
            f"{_f(s['au_f1'])} / {_f(h['au_f1'])} ({_f(ga, '{:+.3f}')}) | {verdict} | "
            f"{_f(_pool(s, h, 'head_acc'), '{:.2f}')} / {_f(_pool(s, h, 'head_agrees'), '{:.2f}')} |")
        data[form] = {"seen": s, "heldout": h, "intensity_gap": gi, "au_f1_gap": ga,
                      "intensity_ok": ok_i, "au_f1_ok": ok_a}
    return "\n".join(lines), data


SPLIT_LABELS = (("seen (train) phrasings", "train"), ("held-out phrasings", "heldout"))


def table_forms(pipe, clips: list[Clip], forms: tuple[str, ...], ev, size: int, probe, sample_seeds: int,
                run_system, model_output, markdown_table, splits: tuple[str, ...] = ("train", "heldout"),
                weights=None) -> tuple[str, dict]:
    """Per form: a seen row and a held-out row (run_system from training/quality.py), then the summary.
    `splits` = ("heldout",) runs the held-out rows only (a model compared with another on them)."""
    chunk = pipe.cfg.stream.chunk_frames
    results, parts, raw = {}, [], {}
    for form in forms:
        keep = clips_for(form, clips)
        if not keep:
            continue
        reps = keep * sample_seeds
        rows = []
        for label, split in (x for x in SPLIT_LABELS if x[1] in splits):
            produce, reads = with_head_reads(pipe, model_output(pipe, form_text(form, split), size, len(keep)),
                                             weights)
            row = run_system(f"{form}, {label}", reps, produce, ev, chunk, probe)
            for j, rec in enumerate(row.clips):
                rec["head_level"] = reads.get(j)
            rows.append(row)
        results[form] = {split: row.clips for (_, split), row in
                         zip((x for x in SPLIT_LABELS if x[1] in splits), rows)}
        parts.append(f"{form} ({len(keep)} clips x {sample_seeds} seeds):\n\n" + markdown_table(rows))
        raw[form] = {r.name: {"summary": r.summary, "clips": r.clips} for r in rows}
    text, data = summary_table(results)
    return ("Per phrasing form, seen vs held out:\n\n" + text + "\n\n" + "\n\n".join(parts),
            {"forms": data, "rows": raw})

"""facepaint.evaluation.tables: Tables 2 and 1 of a run beside the published figures, the loss ablation's table,
summaries as JSON."""

import json
import math

from facepaint.evaluation import tables


def summary_row(psnr: float) -> dict:
    return {
        "psnr_bg": psnr,
        "psnr_bg_std": 0.5,
        "psnr_bg_inf": 2,
        "psnr_full": 31.2,
        "psnr_full_std": 1.0,
        "psnr_full_inf": 0,
        "changed_outside_soft": 0,
        "seconds_per_edit": 1.5,
        "clock": "cpu",
        "peak_mem_mib": None,
    }


def test_markdown_table_marks_unavailable_and_lists_published_numbers():
    summary = {m: summary_row(psnr) for m, psnr in (("ours", 36.25), ("ours_no_blend", math.inf))}
    md = tables.markdown_table(
        summary, {}, {"brushnet": "no weights"}, {"fid": "Inception weights missing"}, {}, "CPU", 8, 2
    )
    assert "| ours | n/a | 36.250 ± 0.500 (+2 exact) | n/a |" in md
    assert "| ours (no blending) | n/a | inf (all 2 exact) |" in md
    assert "BrushNet: not available: no weights" in md and "FID: unavailable: Inception weights missing" in md
    assert "| BrushNet | n/a |" in md
    assert "63.981" in md and "35.04 ± 0.63" in md and "34.59 ± 0.58" in md  # Tables 2 and 1 as published
    assert "outside M dilated 2 px" in md and "31.200 ± 1.000" in md


def test_a_demo_model_heads_the_table_saying_its_figures_are_not_the_methods():
    from facepaint.method.models import ModelConfig

    summary = {"ours": summary_row(38.0)}
    note = ModelConfig("tiny", "x", None, None, 0).demo_notice
    tiny = ModelConfig("tiny", "x", None, None, 0)
    md = tables.markdown_table(summary, {}, {}, {}, {}, "CPU", 8, 2, model_note=note, model_name=tiny.name)
    head = md.split("## Table 2")[0]
    assert "**Demo model.**" in head and "edits are noise" in head and "not comparable with the published" in head
    # the first line names the model, so that a table seen alone cannot be taken for the method's figures
    assert (
        md.splitlines()[0]
        == "# Evaluation of a demo model (random weights, tiny-random(seed=0)): 8 image-prompt pairs on CPU"
    )
    assert ModelConfig("pretrained", "x", None, None, 0).demo_notice is None
    real = tables.markdown_table(summary, {}, {}, {}, {}, "cuda", 100, 8, model_name="sd15-inpainting")
    assert "Demo model" not in real and real.startswith("# Evaluation of the model trained from sd15-inpainting: 100")
    # the background region is ours: no claim that the publication's figures imply it
    assert "[ours]: the publication does not state the region" in md and "imply" not in md


def test_a_failed_method_is_a_row_of_n_a_with_its_error():
    md = tables.markdown_table(
        {"ours": summary_row(30.0)}, {"ours": 12.5}, {}, {}, {"sd15_inpaint": "OOM"}, "GPU", 3, 1
    )
    assert "| ours | 12.500 | 30.000 ± 0.500 (+2 exact) |" in md
    assert "| SD1.5 inpaint | n/a |" in md and "SD1.5 inpaint: failed: OOM" in md


def test_ablation_table_and_jsonable():
    summary = {"masked": summary_row(33.0), "uniform": summary_row(math.inf)}
    md = tables.ablation_table(summary, {"pickscore": "no weights"}, 4)
    assert "# Loss ablation: 4 image-prompt pairs" in md
    assert "| ours, masked loss | 33.000 ± 0.500 (+2 exact) | n/a | n/a | 31.200 ± 1.000 |" in md
    assert "| ours, uniform loss | inf (all 2 exact) |" in md and "- pickscore: unavailable: no weights" in md
    row = tables.jsonable({"a": math.inf, "b": math.nan, "c": 1.5, "d": None, "e": "x"})
    assert row == {"a": "inf", "b": None, "c": 1.5, "d": None, "e": "x"}
    assert json.loads(json.dumps(row, allow_nan=False)) == row  # strict JSON


def test_what_is_off_reads_off_in_its_cells_and_says_why_apart_from_what_is_unavailable():
    """A metric or method the settings leave out (the demo profile's FID, LPIPS, PickScore, Paint-by-Example) is
    "off" in its cells and listed with its reason, apart from what was tried and is unavailable."""
    summary = {"ours": summary_row(30.0)}
    off_metrics = {m: f"off in the demo profile: {m} needs weights" for m in ("fid", "lpips", "pickscore")}
    off_methods = {"paint_by_example": "off in the demo profile: not in params.yaml evaluate.methods"}
    md = tables.markdown_table(summary, {}, {}, {}, {}, "CPU", 8, 2, off_methods=off_methods, off_metrics=off_metrics)
    assert "| ours | off | 30.000 ± 0.500 (+2 exact) | off | off |" in md
    assert "- FID: off in the demo profile: fid needs weights" in md and "- PickScore: off in the demo" in md
    assert "- Paint-by-Example: off in the demo profile: not in params.yaml" in md
    assert "unavailable" not in md and "n/a:" not in md and "| Paint-by-Example |" not in md
    ablation = tables.ablation_table({"masked": summary_row(33.0)}, {}, 4, {"lpips": "off in the demo profile"})
    assert "| ours, masked loss | 33.000 ± 0.500 (+2 exact) | off | n/a |" in ablation
    assert "- lpips: off in the demo profile" in ablation

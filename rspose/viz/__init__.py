"""Visual output: correlation plots from ``*.instances.json`` tables and skeletons drawn on images."""

from rspose.viz.plots import (
    calibration_curve,
    correlation,
    correlation_summary,
    format_summary,
    instance_arrays,
    keypoint_correlations,
    load_compare_results,
    load_instances,
    load_runs,
    plot_ap_before_after_nms,
    plot_calibration,
    plot_decomposition,
    plot_keypoint_correlations,
    plot_runs_side_by_side,
    plot_score_vs_oks,
    run_label,
    validate_instances,
)
from rspose.viz.skeleton import draw_predictions_on_images, draw_skeleton

__all__ = [
    "calibration_curve",
    "correlation",
    "correlation_summary",
    "draw_predictions_on_images",
    "draw_skeleton",
    "format_summary",
    "instance_arrays",
    "keypoint_correlations",
    "load_compare_results",
    "load_instances",
    "load_runs",
    "plot_ap_before_after_nms",
    "plot_calibration",
    "plot_decomposition",
    "plot_keypoint_correlations",
    "plot_runs_side_by_side",
    "plot_score_vs_oks",
    "run_label",
    "validate_instances",
]

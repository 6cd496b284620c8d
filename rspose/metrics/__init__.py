"""Evaluation: OKS, OKS-NMS, COCO / CrowdPose keypoint mAP, confidence-OKS correlations, MPII PCKh."""

from rspose.metrics.coco_ap import OKSMeanAP, deduplicate, evaluate_predictions, rescore, to_coco_results
from rspose.metrics.coco_eval import GroundTruth, evaluate_keypoints, load_ground_truth
from rspose.metrics.correlation import average_ranks, kendall, pearson, spearman, spearman_per_column
from rspose.metrics.instances import read_instances, write_instances
from rspose.metrics.nms import oks_nms, soft_oks_nms
from rspose.metrics.oks import best_gt_oks, oks_matrix, oks_pairs, oks_terms
from rspose.metrics.pckh import PCKhAccuracy

__all__ = [
    "OKSMeanAP",
    "PCKhAccuracy",
    "GroundTruth",
    "average_ranks",
    "best_gt_oks",
    "deduplicate",
    "evaluate_keypoints",
    "evaluate_predictions",
    "kendall",
    "load_ground_truth",
    "oks_matrix",
    "oks_nms",
    "oks_pairs",
    "oks_terms",
    "pearson",
    "read_instances",
    "rescore",
    "soft_oks_nms",
    "spearman",
    "spearman_per_column",
    "to_coco_results",
    "write_instances",
]

"""Codecs: keypoints in input-crop pixels <-> training targets, batched decoding and flip-back rules."""

from rspose.codecs.base import Codec, HeadOutput
from rspose.codecs.msra_heatmap import MSRAHeatmap
from rspose.codecs.simcc import SimCCLabel
from rspose.codecs.udp_heatmap import UDPHeatmap

__all__ = ["Codec", "HeadOutput", "MSRAHeatmap", "SimCCLabel", "UDPHeatmap"]

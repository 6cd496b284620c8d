"""Base class of the pose heads: typed constructor, layers built once the backbone and data are known.

A head's constructor takes its design (deconvolutions, kernel sizes, split ratio) plus the sizes that
come from elsewhere: ``in_channels`` (the backbone's ``out_channels``), ``num_keypoints`` (the
dataset) and, for SimCC, the input and feature-map sizes. Those may be left ``None`` in a config; the
owner (:class:`rspose.models.PoseModel`) then calls :meth:`PoseHead.build` with the real values.
When every size is given to the constructor the head is built at once, so plain Python use works:
``HeatmapHead(2048, 17)(feat)``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn


class PoseHead(nn.Module):
    """A head mapping one backbone feature map (B, C, h, w) to heatmaps or SimCC vectors.

    Subclasses call ``super().__init__(in_channels, num_keypoints)``, store their own options, then
    :meth:`_build_if_ready`; they implement :meth:`_build_layers` (create and initialise the layers)
    and may override :meth:`_needs` (the size arguments they require) and :meth:`_take_sizes`.

    ``output_dims``: 2 for heads that output heatmaps, 1 for SimCC heads (must match the codec's ``num_dims``).
    """

    output_dims: ClassVar[int] = 2

    def __init__(self, in_channels: int | None, num_keypoints: int | None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.is_built = False

    def build(
        self,
        in_channels: int,
        num_keypoints: int | None = None,
        input_size: tuple[int, int] | None = None,
        feature_size: tuple[int, int] | None = None,
        simcc_split_ratio: float | None = None,
    ) -> PoseHead:
        """Create the layers for the given sizes; a no-op when already built with the same sizes.

        Args:
            in_channels: C of the feature map (``backbone.out_channels``).
            num_keypoints: K; ``None`` keeps the constructor's value.
            input_size: (W, H) of the input crop (SimCC only).
            feature_size: (w, h) of the backbone feature map (SimCC only).
            simcc_split_ratio: bins per input pixel (SimCC only; the codec's).

        Raises:
            ValueError: a size contradicts the one given to the constructor, or a required size is missing.
        """
        given = {"in_channels": in_channels, "num_keypoints": num_keypoints}
        given.update(self._take_sizes(input_size, feature_size, simcc_split_ratio))
        for name, value in given.items():
            if value is None:
                continue
            current = getattr(self, name)
            if isinstance(value, (list, tuple)):
                value = tuple(int(v) for v in value)
            if current is not None and current != value:
                raise ValueError(f"{type(self).__name__}: {name}={current!r} was given to the constructor but the "
                                 f"model needs {name}={value!r} (leave it out of the head config to infer it)")
            setattr(self, name, value)
        if not self.is_built:
            missing = [n for n in self._needs() if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{type(self).__name__}.build: {', '.join(missing)} unknown (pass it to the "
                                 "constructor or to build())")
            self._build_layers()
            self.is_built = True
        return self

    def _needs(self) -> tuple[str, ...]:
        """Attribute names that must be known before the layers can be built."""
        return ("in_channels", "num_keypoints")

    def _take_sizes(
        self,
        input_size: tuple[int, int] | None,
        feature_size: tuple[int, int] | None,
        simcc_split_ratio: float | None = None,
    ) -> dict[str, tuple[int, int] | float | None]:
        """Map build()'s size arguments to this head's attributes (none for heatmap heads)."""
        return {}

    def _build_if_ready(self) -> None:
        if all(getattr(self, n) is not None for n in self._needs()):
            self.build(self.in_channels)  # type: ignore[arg-type]

    def _check_built(self) -> None:
        if not self.is_built:
            raise RuntimeError(f"{type(self).__name__} is not built yet: give in_channels / num_keypoints to its "
                               "constructor, wrap it in PoseModel, or call head.build(...)")

    def _build_layers(self) -> None:
        """Create the layers from the now known sizes and initialise them."""
        raise NotImplementedError


def init_mmpose_(module: nn.Module, conv_std: float = 0.001, linear_std: float = 0.01) -> None:
    """mmpose head init: Conv2d / ConvTranspose2d weights N(0, conv_std), Linear N(0, linear_std),
    biases 0, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, std=linear_std if isinstance(m, nn.Linear) else conv_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

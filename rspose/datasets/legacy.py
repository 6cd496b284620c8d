"""The old spelling of the data section (``data.dataset: coco`` with flat ``data.root``, ``data.train_ann``,
``data.synthetic_train_images``, ``data.flip_prob``, ...): refused with one error that writes the new spelling."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rspose.data.transforms import TopDownAugment
from rspose.datasets import dataset_class
from rspose.errors import UserError

#: the old ``data.dataset`` strings -> the classes that replace them.
OLD_DATASETS = {
    "coco": "rspose.datasets.COCO",
    "crowdpose": "rspose.datasets.CrowdPose",
    "mpii": "rspose.datasets.MPII",
    "custom": "rspose.datasets.COCOFormat",
    "synthetic": "rspose.datasets.Synthetic",
}
#: old flat ``data.*`` keys that are now the dataset's ``init_args`` (old name -> new name).
OLD_DATASET_KEYS = {
    **{key: key for key in ("root", "train_ann", "val_ann", "test_ann", "train_img_dir", "val_img_dir",
                            "test_img_dir", "val_bbox_file", "test_bbox_file", "bbox_score_thr", "head_box_file",
                            "sigmas", "flip_indices", "upper_body_ids", "lower_body_ids")},
    "synthetic_train_images": "train_images",
    "synthetic_val_images": "val_images",
    "synthetic_seed": "seed",
}
#: old flat ``data.*`` keys that are now ``data.augment`` fields.
OLD_AUGMENT_KEYS = tuple(f.name for f in dataclasses.fields(TopDownAugment))


def _old_name(dataset: Any) -> bool:
    """An old ``data.dataset`` string (a name, not a class path)."""
    return isinstance(dataset, str) and "." not in dataset


def _arguments(class_path: str) -> set[str] | None:
    """The constructor arguments of the dataset class ``class_path``; None when it is no importable dataset class."""
    try:
        cls = dataset_class(class_path)
    except (ImportError, UserError):
        return None
    return set(inspect.signature(cls).parameters)


def new_data_spelling(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``dataset`` / ``augment`` entries of the new spelling of an old data section; None if it is not old."""
    dataset = data.get("dataset")
    old_keys = [k for k in data if k in OLD_DATASET_KEYS or k in OLD_AUGMENT_KEYS]
    if not _old_name(dataset) and not old_keys:
        return None
    if isinstance(dataset, str):
        class_path = OLD_DATASETS.get(dataset, dataset)
    else:
        class_path = (dataset or {}).get("class_path", "rspose.datasets.COCO")
    accepted = _arguments(class_path)
    init_args = {OLD_DATASET_KEYS[k]: data[k] for k in data
                 if k in OLD_DATASET_KEYS and (accepted is None or OLD_DATASET_KEYS[k] in accepted)}
    new: dict[str, Any] = {"dataset": {"class_path": class_path, "init_args": init_args}}
    augment = {k: data[k] for k in data if k in OLD_AUGMENT_KEYS}
    if augment:
        new["augment"] = augment
    return new


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()


def check_data_spelling(data: Mapping[str, Any], where: str) -> None:
    """Raise one :class:`UserError` that writes the new spelling when ``data`` (a config's ``data`` section, from
    ``where``) uses the old one."""
    new = new_data_spelling(data)
    if new is None:
        return
    old = [f"dataset: {data['dataset']!r}"] if _old_name(data.get("dataset")) else []
    old += [k for k in data if k in OLD_DATASET_KEYS or k in OLD_AUGMENT_KEYS]
    dataset = new["dataset"]
    dropped = [k for k in data if k in OLD_DATASET_KEYS and OLD_DATASET_KEYS[k] not in dataset["init_args"]]
    what = "an argument" if len(dropped) == 1 else "arguments"
    note = f" ({', '.join(dropped)}: not {what} of {dataset['class_path']}, left out)" if dropped else ""
    raise UserError(
        f"{where}: data uses the old spelling ({', '.join(old)}); a dataset is now an object and the augmentation "
        f"one block: write data: {_flow(new)}{note} (the other data keys stay; docs/data.md)"
    )


def check_cli_args(args: Sequence[str]) -> None:
    """:func:`check_data_spelling` for the config files (``--config``/``-c``) and ``--data.*`` arguments of a
    LightningCLI argument list."""
    args = [str(a) for a in args]
    flat: dict[str, Any] = {}
    for i, arg in enumerate(args):
        key, _, value = arg.partition("=") if "=" in arg else (arg, "", args[i + 1] if i + 1 < len(args) else None)
        if key in ("--config", "-c") and value is not None:
            path = Path(value)
            try:
                config = yaml.safe_load(path.read_text()) if path.is_file() else None
            except (OSError, yaml.YAMLError):
                config = None  # LightningCLI reports it
            data = config.get("data") if isinstance(config, dict) else None
            if isinstance(data, dict):
                check_data_spelling(data, str(path))
        elif key.startswith("--data.") and key.count(".") == 1:
            flat[key[len("--data."):]] = yaml.safe_load(value) if isinstance(value, str) else value
    if new_data_spelling(flat) is None:
        return
    if _old_name(flat.get("dataset")):
        check_data_spelling(flat, "the command line (--data.*)")
    spelled = [f"--data.dataset.init_args.{OLD_DATASET_KEYS[k]}" if k in OLD_DATASET_KEYS else f"--data.augment.{k}"
               for k in flat if k in OLD_DATASET_KEYS or k in OLD_AUGMENT_KEYS]
    old = [f"--data.{k}" for k in flat if k in OLD_DATASET_KEYS or k in OLD_AUGMENT_KEYS]
    raise UserError(f"{', '.join(old)}: the old spelling of the data section; write {', '.join(spelled)} (docs/data.md)")

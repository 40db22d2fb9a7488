"""COCO Caption on the Karpathy split, in its `dataset_coco.json` format:
{"images": [{"cocoid", "split", "filename", "sentences": [{"raw", "tokens"}, ...]}, ...]}."""

from __future__ import annotations

from pathlib import Path

from tuner_eval.data import Dataset, Problem
from tuner_eval.data.download import COCO_KARPATHY, fetch, sha256_file
from tuner.jsonl import InputError, read_json


def load_coco_captions(path: Path | None = None, split: str = "test") -> Dataset:
    path = path or fetch(COCO_KARPATHY)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{path}:1: expected the Karpathy format with an `images` list")
    problems = {}
    for index, image in enumerate(data["images"]):
        for name in ("cocoid", "split", "sentences"):
            if name not in image:
                raise InputError(f"{path}:1: images[{index}]: field `{name}` is missing")
        if image["split"] != split:
            continue
        task_id = str(image["cocoid"])
        references = [s["raw"] for s in image["sentences"]]
        problems[task_id] = Problem(task_id, "A short caption for this image:", "Describe this image in one sentence.",
                                    None, {"filename": image.get("filename"), "references": references})
    if not problems:
        raise InputError(f"{path}:1: no images in split `{split}`")
    return Dataset(problems, path, sha256_file(path), {"split": split})

"""Fetch each data set once from its public home into a cache (override: $TUNER_EVAL_CACHE)."""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "TUNER_EVAL_CACHE"


def cache_dir() -> Path:
    """$TUNER_EVAL_CACHE, else $XDG_CACHE_HOME/tuner/eval, else ~/.cache/tuner/eval."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tuner" / "eval"


class DownloadError(RuntimeError):
    """A data set could not be fetched; the message says where to put it instead."""


@dataclass(frozen=True)
class Remote:
    """One published data file."""

    url: str
    filename: str
    sha256: str | None = None
    """Pinned content hash, where the publisher's file never changes."""
    member: str | None = None
    """For a zip archive: the member to extract (and cache under `filename`)."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: Remote, cache: Path | None = None) -> Path:
    """Return the cached file, downloading it (and checking its hash) the first time.

    Raises:
        DownloadError: the download failed or its hash does not match the pinned one.
    """
    import requests

    folder = cache or cache_dir()
    target = folder / remote.filename
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (remote.filename + ".part")
    log.info("downloading %s", remote.url)
    try:
        with requests.get(remote.url, stream=True, timeout=60) as response:
            response.raise_for_status()
            with open(partial, "wb") as handle:
                for block in response.iter_content(1 << 20):
                    handle.write(block)
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        reason = type(exc).__name__
        raise DownloadError(f"could not download {remote.url} ({reason}); download it yourself and pass "
                            f"--dataset, or put it at {target}") from exc
    if remote.member:
        with zipfile.ZipFile(partial) as archive:
            extracted = folder / (remote.filename + ".member")
            with archive.open(remote.member) as src, open(extracted, "wb") as dst:
                dst.write(src.read())
        partial.unlink()
        partial = extracted
    if remote.sha256 and sha256_file(partial) != remote.sha256:
        partial.unlink()
        raise DownloadError(f"{remote.url}: sha256 differs from the pinned {remote.sha256}")
    os.replace(partial, target)
    return target


HUMANEVAL_PLUS = Remote(
    "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz",
    "HumanEvalPlus-v0.1.10.jsonl.gz", "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101")
MBPP_PLUS = Remote("https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
                   "MbppPlus-v0.2.0.jsonl.gz")
MBPP = Remote("https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl",
              "mbpp.jsonl")
DS1000 = Remote("https://github.com/xlang-ai/DS-1000/raw/main/data/ds1000.jsonl.gz", "ds1000.jsonl.gz")
SCIENCEQA_PROBLEMS = Remote(
    "https://raw.githubusercontent.com/lupantech/ScienceQA/main/data/scienceqa/problems.json", "scienceqa-problems.json")
SCIENCEQA_SPLITS = Remote(
    "https://raw.githubusercontent.com/lupantech/ScienceQA/main/data/scienceqa/pid_splits.json",
    "scienceqa-pid_splits.json", "85c7820b9f136e572579a01dab2c77a7f8140b59211e421fa5182491d45ee3a7")
SCIENCEQA_CAPTIONS = Remote("https://raw.githubusercontent.com/lupantech/ScienceQA/main/data/captions.json",
                            "scienceqa-captions.json",
                            "764e45f2b62b843f629941695af58d2adcd5613a25b5a74b1352ccace618537e")
COCO_KARPATHY = Remote("https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                       "dataset_coco.json", member="dataset_coco.json")

"""The model registry: name -> (class, config class, fixed options). Nothing else lives here."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ssrf.models.base import SequentialRecommender
from ssrf.models.caser import Caser, CaserConfig
from ssrf.models.cosrec import CosRec, CosRecConfig
from ssrf.models.ctr.autoint import AutoInt, AutoIntConfig
from ssrf.models.ctr.dcn import DCN, DCNConfig
from ssrf.models.ctr.deepfm import DeepFM, DeepFMConfig
from ssrf.models.ctr.din import DIN, DINConfig
from ssrf.models.ctr.fm import FM, FMConfig
from ssrf.models.ctr.nfm import NFM, NFMConfig
from ssrf.models.ctr.wide_deep import WideDeep, WideDeepConfig
from ssrf.models.fdsa import FDSA, FDSAConfig
from ssrf.models.gru4rec import GRU4Rec, GRU4RecConfig
from ssrf.models.pop import Pop, PopConfig
from ssrf.models.reference import Random, RandomConfig, Repeat, RepeatConfig
from ssrf.models.sasrec import SASRec, SASRecConfig
from ssrf.models.ssrf import SSRF, SSRFConfig

REGISTRY: dict[str, tuple[type[SequentialRecommender], type, dict[str, Any]]] = {
    "ssrf": (SSRF, SSRFConfig, {}),
    "ssrf-uc": (SSRF, SSRFConfig, {"use_context": False}),  # the paper's ablation without context
    "ssrf-o": (SSRF, SSRFConfig, {"pairwise": False}),  # the paper's ablation without pairwise encoding
    "sasrec": (SASRec, SASRecConfig, {}),  # Kang & McAuley 2018
    "random": (Random, RandomConfig, {}),  # reference: a fixed pseudo-random ranking per user, no training
    "pop": (Pop, PopConfig, {}),  # reference: training-period item counts, the same for every user
    "repeat": (Repeat, RepeatConfig, {}),  # reference: the user's own items by recency, then pop
    "gru4rec": (GRU4Rec, GRU4RecConfig, {}),  # Hidasi et al. 2016
    "caser": (Caser, CaserConfig, {}),  # Tang & Wang 2018
    "cosrec": (CosRec, CosRecConfig, {}),  # Yan et al. 2019
    "fdsa": (FDSA, FDSAConfig, {}),  # Zhang et al. 2019
    "fm": (FM, FMConfig, {}),  # Rendle 2010
    "wide_deep": (WideDeep, WideDeepConfig, {}),  # Cheng et al. 2016
    "nfm": (NFM, NFMConfig, {}),  # He & Chua 2017
    "deepfm": (DeepFM, DeepFMConfig, {}),  # Guo et al. 2017
    "dcn": (DCN, DCNConfig, {}),  # Wang et al. 2017
    "din": (DIN, DINConfig, {}),  # Zhou et al. 2018
    "autoint": (AutoInt, AutoIntConfig, {}),  # Song et al. 2019
}


def config_fields(name: str) -> set[str]:
    return {f.name for f in fields(REGISTRY[name][1])}


def build(name: str, config: dict[str, Any]) -> SequentialRecommender:
    """Build model `name` from plain numbers and options (unknown keys are an error)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    cls, cfg_cls, fixed = REGISTRY[name]
    unknown = set(config) - config_fields(name)
    if unknown:
        raise KeyError(f"unknown option(s) for {name}: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in {**config, **fixed}.items()}
    return cls(cfg_cls(**values))

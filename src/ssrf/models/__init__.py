"""The model registry: name -> (class, config class, fixed options), and the one check of model options."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from ssrf.core import DataError, check_config
from ssrf.models.base import SequentialRecommender
from ssrf.models.bsarec import BSARec, BSARecConfig
from ssrf.models.caser import Caser, CaserConfig
from ssrf.models.cosrec import CosRec, CosRecConfig
from ssrf.models.ctr.autoint import AutoInt, AutoIntConfig
from ssrf.models.ctr.dcn import DCN, DCNConfig
from ssrf.models.ctr.deepfm import DeepFM, DeepFMConfig
from ssrf.models.ctr.din import DIN, DINConfig
from ssrf.models.ctr.fm import FM, FMConfig
from ssrf.models.ctr.nfm import NFM, NFMConfig
from ssrf.models.ctr.wide_deep import WideDeep, WideDeepConfig
from ssrf.models.dif_sr import DIFSR, DIFSRConfig
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
    "dif_sr": (DIFSR, DIFSRConfig, {}),  # Xie et al. 2022
    "fm": (FM, FMConfig, {}),  # Rendle 2010
    "wide_deep": (WideDeep, WideDeepConfig, {}),  # Cheng et al. 2016
    "nfm": (NFM, NFMConfig, {}),  # He & Chua 2017
    "deepfm": (DeepFM, DeepFMConfig, {}),  # Guo et al. 2017
    "dcn": (DCN, DCNConfig, {}),  # Wang et al. 2017
    "din": (DIN, DINConfig, {}),  # Zhou et al. 2018
    "autoint": (AutoInt, AutoIntConfig, {}),  # Song et al. 2019
    "bsarec": (BSARec, BSARecConfig, {}),  # Shin et al. 2024
}


def config_fields(name: str) -> set[str]:
    return {f.name for f in fields(REGISTRY[name][1])}


ZERO_ALLOWED = {"seed", "ffn"}  # integer options that may be 0 (ffn 0: d wide); every other one counts (>= 1)
FROM_DATA = {
    "n_items",
    "n_users",
    "n_behaviors",
    "field_sizes",
    "field_widths",
}  # set from the data, not options
PLACEHOLDER_COUNTS = {
    "n_items": 1,
    "n_users": 1,
}  # stand-ins for the data's counts when only options are checked


def check_options(name: str, options: dict[str, Any]) -> Any:
    """The config of model `name` from `options`, checked before any work: types as annotated (strict),
    every count >= 1, dropout rates in [0, 1), other numbers finite, `d` divisible by `heads`. A `DataError`
    names the option (`model_options.<name>`), its value and what is allowed."""
    if name not in REGISTRY:
        raise DataError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    _, cfg_cls, fixed = REGISTRY[name]
    unknown = set(options) - config_fields(name)
    if unknown:
        raise DataError(f"unknown model option(s) for {name}: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in {**options, **fixed}.items()}
    cfg = cfg_cls(**{**PLACEHOLDER_COUNTS, **values})
    check_config(cfg, "model_options")
    for f in fields(cfg):
        if f.name in FROM_DATA:
            continue
        value = getattr(cfg, f.name)
        items = value if isinstance(value, tuple) else (value,)
        bad = next((x for x in items if _out_of_range(f.name, x)), None)
        if bad is not None:
            what = "in [0, 1)" if "dropout" in f.name else ">= 0" if f.name in ZERO_ALLOWED else ">= 1"
            what = "finite" if isinstance(bad, float) and "dropout" not in f.name else what
            raise DataError(f"model_options.{f.name} = {value!r}: must be {what}")
    d, heads = getattr(cfg, "d", None), getattr(cfg, "heads", None)
    if d is not None and heads is not None and d % heads:
        raise DataError(f"model_options.d = {d} with heads = {heads}: d must be divisible by heads")
    return cfg


def _out_of_range(name: str, x: Any) -> bool:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    if "dropout" in name:
        return not 0 <= x < 1
    if isinstance(x, float):
        return not math.isfinite(x)
    return x < (0 if name in ZERO_ALLOWED else 1)


def build(name: str, config: dict[str, Any]) -> SequentialRecommender:
    """Build model `name` from plain numbers and options (unknown or out-of-range ones are a `DataError`)."""
    cfg = check_options(name, config)
    return REGISTRY[name][0](cfg)

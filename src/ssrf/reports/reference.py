"""Numbers measured elsewhere, printed beside ours and always labelled with where they come from.

- `PAPER_TABLE_II`: the paper's Table II (Yu & Tian, ../shared/paper), AUC and RelaImpr as printed. The
  printed RelaImpr of FM is not 0 although FM is the base of eq. 15; we copy it as printed.
- `PAPER_CLAIMED_AUC_GAIN`: the paper's "at least 23.249%" (SSRF 0.880 against AutoInt 0.714 on Alibaba).
- `PUBLISHED_BEAUTY`: Amazon Beauty, leave-one-out, ranking against every item, as recorded in
  docs/benchmarks.md (HR@10, NDCG@10).
- `GPU_SWEEP_BEAUTY`: this project's one-seed sweep on an NVIDIA H200 (docs/benchmarks.md, round 1: 300 s
  of training per configuration), for the configuration closest to each model.
"""

from __future__ import annotations

# model -> dataset column ("Alibaba" is Taobao UserBehavior) -> (AUC, RelaImpr as a fraction)
PAPER_TABLE_II: dict[str, dict[str, tuple[float, float]]] = {
    "fm": {"Alibaba": (0.698, 0.3891), "Retailrocket": (0.728, 0.4135)},
    "wide_deep": {"Alibaba": (0.680, 0.2789), "Retailrocket": (0.715, 0.3073)},
    "nfm": {"Alibaba": (0.678, 0.5234), "Retailrocket": (0.703, 0.5684)},
    "deepfm": {"Alibaba": (0.704, 0.6972), "Retailrocket": (0.732, 0.7008)},
    "dcn": {"Alibaba": (0.697, 0.7478), "Retailrocket": (0.726, 0.7623)},
    "din": {"Alibaba": (0.676, 0.8523), "Retailrocket": (0.692, 0.8619)},
    "autoint": {"Alibaba": (0.714, 0.8752), "Retailrocket": (0.758, 0.8857)},
    "ssrf": {"Alibaba": (0.880, 0.9222), "Retailrocket": (0.912, 0.9451)},
}
PAPER_CLAIMED_AUC_GAIN = 0.23249

# the paper's Table I (users, items, actions per user, actions per item), as printed
PAPER_TABLE_I: dict[str, tuple[int, int, float, float]] = {
    "Alibaba": (21960, 19897, 15.1, 16.6),
    "Retailrocket": (6040, 3417, 165.5, 296.6),
}

# model (or a published model outside this project's zoo) -> (HR@10, NDCG@10)
PUBLISHED_BEAUTY: dict[str, tuple[float, float]] = {
    "sasrec": (0.0605, 0.0318),
    "fdsa": (0.0407, 0.0208),
    "caser": (0.0347, 0.0176),
    "S3-Rec": (0.0647, 0.0327),
    "DIF-SR": (0.0890, 0.0440),
    "BSARec": (0.1008, 0.0611),
}

# model -> (sweep configuration, HR@10, NDCG@10, epochs within the 300 s budget)
GPU_SWEEP_BEAUTY: dict[str, tuple[str, float, float, int]] = {
    "ssrf": ("ssrf-bce", 0.0336, 0.0175, 28),
    "ssrf-uc": ("ssrf-uc-ce-tie-d05", 0.0334, 0.0175, 30),
    "ssrf-o": ("ssrf-o-ce-tie-d05", 0.0369, 0.0194, 30),
    "sasrec": ("sasrec-bce", 0.0271, 0.0137, 34),
    "fdsa": ("fdsa-ce", 0.0606, 0.0348, 33),
    "caser": ("caser-bce", 0.0362, 0.0190, 31),
    "gru4rec": ("gru4rec-ce", 0.0590, 0.0355, 37),
    "cosrec": ("cosrec-ce", 0.0272, 0.0149, 34),
}

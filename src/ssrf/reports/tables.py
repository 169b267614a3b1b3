"""Plain-text and markdown tables."""

from __future__ import annotations

from collections.abc import Sequence

MODEL_NAMES = {  # registry name -> the name papers use
    "fm": "FM",
    "wide_deep": "Wide&Deep",
    "nfm": "NFM",
    "deepfm": "DeepFM",
    "dcn": "DCN",
    "din": "DIN",
    "autoint": "AutoInt",
    "ssrf": "SSRF",
    "ssrf-uc": "SSRF-UC",
    "ssrf-o": "SSRF-O",
    "sasrec": "SASRec",
    "pop": "Pop",
    "gru4rec": "GRU4Rec",
    "caser": "Caser",
    "cosrec": "CosRec",
    "fdsa": "FDSA",
    "ssrf-best": "SSRF best (tied, ce)",  # the reproduction's variants (ssrf.reproduce.VARIANTS)
    "ssrf-tied-bce": "SSRF tied, bce",
    "ssrf-untied-ce": "SSRF untied, ce",
    "random": "Random",
    "repeat": "Repeat rule",
}


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats printed with 4 decimals."""

    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_stats(meta: dict) -> str:
    """The paper's Table I (users, items, actions per user and per item) and the rest of `data stats`."""
    s = meta["stats"]
    out = [
        f"dataset: {meta['format']}  ({', '.join(meta['inputs'])})",
        "",
        markdown(
            ["users", "items", "actions per user", "actions per item", "events", "categories"],
            [
                [
                    s["users"],
                    s["items"],
                    f"{s['actions_per_user']:.1f}",
                    f"{s['actions_per_item']:.1f}",
                    s["events"],
                    s["categories"],
                ]
            ],
        ),
        "",
    ]
    fields = ", ".join(f"{k} ({v} values)" for k, v in s["context_fields"].items()) or "none"
    out.append(f"context fields: {fields}")
    out.append(f"time span: {s['time_start']} .. {s['time_end']}")
    out.append("behaviour mix: " + ", ".join(f"{k} {v}" for k, v in s["behavior_mix"].items()))
    si = meta["split_info"]
    out.append(
        f"split ({meta['split']}): train {si['train_events']}, valid {si['valid_events']}, "
        f"test {si['test_events']} events; {si['test_users']} test users"
    )
    read = meta["rows_read"]
    dropped = meta["dropped"]
    out.append(f"rows read: {read}; kept {s['events']}; dropped {read - s['events']}:")
    out += [f"  {reason:<20} {n}" for reason, n in dropped.items()]
    out.append(f"artifacts: {meta.get('path', meta['key'])}")
    return "\n".join(out)

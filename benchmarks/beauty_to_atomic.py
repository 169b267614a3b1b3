"""Amazon Beauty as S3-Rec ships it -> RecBole atomic files, for `--format atomic`.

    .venv/bin/python benchmarks/beauty_to_atomic.py                       # into runs/beauty-atomic/
    .venv/bin/python benchmarks/beauty_to_atomic.py --out /tmp/atomic --data PATH/Beauty.txt

Reads `Beauty.txt` (`user item item ...`, each line one user's items in time order) and
`Beauty_item2attributes.json` beside it (`{item: [attribute, ...]}`), the files `--format s3rec` reads, and
writes, tab-separated with RecBole's typed headers:
- `Beauty.inter`: `user_id:token  item_id:token`, one line per interaction, each user's lines together and
  in S3-Rec's order. There is no `timestamp` field, because S3-Rec's files have no time: the atomic reader
  then takes the file's order as the time (each event's position among its user's lines, 0, 1, 2, ...),
  exactly the positions the s3rec reader gives, so both prepare the same dataset under the same protocol
  (leave-one-out). Writing those positions as a `timestamp:float` instead would make them read as unix
  seconds in 1970, and the automatic split a global time cut.
- `Beauty.item`: `item_id:token  attributes:token_seq`, one line per item of the JSON, its attribute ids
  separated by spaces (an item without attributes has an empty field).

Prints a table and ends with one JSON line of the figures (rows, users, items, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "beauty" / "Beauty.txt"


def convert(txt: Path, out: Path, name: str | None = None) -> dict:
    """Write `<name>.inter` and `<name>.item` (name: the stem of `txt`) into `out` from an S3-Rec
    `<name>.txt` and the `<name>_item2attributes.json` beside it (no `.item` when it is missing).
    Returns the figures: rows, users and items of the `.inter`, the `.item`'s lines and distinct
    attributes, the two paths, seconds."""
    start = time.perf_counter()
    name = name or txt.stem
    out.mkdir(parents=True, exist_ok=True)
    inter, item = out / f"{name}.inter", out / f"{name}.item"
    rows, users, seen = 0, 0, set()
    with open(txt, encoding="utf-8") as src, open(inter, "w", encoding="utf-8", newline="\n") as dst:
        dst.write("user_id:token\titem_id:token\n")
        for line in src:
            user, *items = line.split() or [""]
            if not items:  # (S3-Rec's files have none; the s3rec reader counts them as wrong_column_count)
                continue
            users += 1
            rows += len(items)
            seen.update(items)
            dst.writelines(f"{user}\t{i}\n" for i in items)
    attributes = txt.with_name(f"{txt.stem}_item2attributes.json")
    item_lines, vocabulary = 0, set()
    if attributes.is_file():
        table = json.loads(attributes.read_text(encoding="utf-8"))
        with open(item, "w", encoding="utf-8", newline="\n") as dst:
            dst.write("item_id:token\tattributes:token_seq\n")
            for key, values in table.items():
                dst.write(f"{key}\t{' '.join(map(str, values))}\n")
                vocabulary.update(map(str, values))
        item_lines = len(table)
    return {
        "rows": rows,
        "users": users,
        "items": len(seen),
        "item_lines": item_lines,
        "attributes": len(vocabulary),
        "inter": str(inter),
        "item": str(item) if attributes.is_file() else None,
        "seconds": round(time.perf_counter() - start, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BEAUTY, help="the S3-Rec <name>.txt")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "beauty-atomic", help="output folder")
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"error: {args.data}: file not found")
    figures = convert(args.data, args.out)
    print(f"{args.data} -> {args.out}")
    print("| file | lines | users | items | attributes |")
    print("|---|---|---|---|---|")
    print(f"| {args.data.stem}.inter | {figures['rows']:,} | {figures['users']:,} | {figures['items']:,} | |")
    if figures["item"]:
        print(
            f"| {args.data.stem}.item | {figures['item_lines']:,} | | {figures['item_lines']:,} "
            f"| {figures['attributes']:,} |"
        )
    print(f"converted in {figures['seconds']:.2f} s")
    print(json.dumps({"benchmark": "beauty_to_atomic", **figures}))


if __name__ == "__main__":
    main()

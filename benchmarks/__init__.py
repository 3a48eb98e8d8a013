"""Benchmarks: scripts that print a table and JSON (docs/benchmarks.md); they assert no times."""


def print_result(result: dict[str, object], *, as_json: bool, skip: tuple[str, ...] = ()) -> None:
    """A benchmark's result as a two-column Markdown table (and, with ``as_json``, one JSON line)."""
    import json

    print("| measure | value |")
    print("|---|---|")
    for key, value in result.items():
        if key not in ("benchmark", "machine", *skip):
            print(f"| {key} | {value} |")
    if as_json:
        print(json.dumps(result))

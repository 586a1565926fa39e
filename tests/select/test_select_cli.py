"""`reflectkit select` end to end on hand-made scored files (no model needed: selection only reads scores)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reflectkit.cli import main
from reflectkit.select.api import select


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def sc(ifd: float, rifd: float, **kw: Any) -> dict[str, Any]:
    return {"status": "scored", "ifd_ppl": ifd, "rifd_ppl": rifd, "ifd_loss": ifd, "coherence": 0.6, **kw}


def texts(tag: str) -> dict[str, str]:
    return {"instruction": f"ins {tag}", "input": "", "output": f"out {tag}"}


def recycled_row(i: int, scores: dict[str, Any], missing: str | None = None) -> dict[str, Any]:
    variants = {n: texts(f"{i}-{n}") for n in ("original", "instruction", "response", "both")}
    phases = {}
    if missing:
        variants[missing] = None
        phases[missing] = {"status": "kept_original", "reason": "oracle answer had no [Better Answer] tag"}
        scores = {**scores, missing: None}
    own = variants["both"] or variants["instruction"] or variants["response"]
    return {**own, "reflectkit": {"id": f"row{i}", "recycle": {"variants": variants, "phases": phases},
                                  "score": {**scores["own"], "variants": {k: v for k, v in scores.items() if k != "own"}}}}


# row 0 keeps both; row 1 keeps response; row 2 dropped (count_2); row 3: both missing -> dropped with recycle reason
SCORES = [
    {"own": sc(0.7, 0.3), "original": sc(0.5, 0.5), "instruction": sc(0.6, 0.4), "response": sc(0.9, 0.9), "both": sc(0.7, 0.3)},
    {"own": sc(0.1, 0.1), "original": sc(0.6, 0.5), "instruction": sc(0.5, 0.1), "response": sc(0.8, 0.3), "both": sc(0.1, 0.1)},
    {"own": sc(0.7, 0.45), "original": sc(0.5, 0.5), "instruction": sc(0.6, 0.4), "response": sc(0.9, 0.9), "both": sc(0.7, 0.45)},
    {"own": sc(0.6, 0.4), "original": sc(0.5, 0.5), "instruction": sc(0.6, 0.4), "response": sc(0.9, 0.9), "both": sc(0.7, 0.3)},
]


def _single_file(tmp_path: Path) -> Path:
    rows = [recycled_row(i, s, missing="both" if i == 3 else None) for i, s in enumerate(SCORES)]
    return write_jsonl(tmp_path / "scored.jsonl", rows)


def test_selective_from_single_file_keeps_variant_texts_and_reports_funnel(tmp_path: Path) -> None:
    s = select([_single_file(tmp_path)], tmp_path / "sel.jsonl", run_dir=tmp_path / "run")
    out = _read(tmp_path / "sel.jsonl")
    assert [(r["instruction"], r["output"]) for r in out] == [("ins 0-both", "out 0-both"), ("ins 1-response", "out 1-response")]
    assert out[0]["reflectkit"]["select"]["kept"] == "both" and out[0]["reflectkit"]["select"]["scores"]["rifd_ppl"] == 0.3
    assert (s.rows_in, s.rows_out) == (4, 2)
    stage = s.funnel.stages[-1]
    assert dict(stage.outcomes) == {"kept:both": 1, "kept:response": 1, "dropped:instruction-only": 1, "missing:both": 1}
    assert "no [Better Answer] tag" in stage.reasons["missing:both"]
    dropped = _read(tmp_path / "run" / "dropped.jsonl")
    assert [d["id"] for d in dropped] == ["row2", "row3"] and all(d["reason"] for d in dropped)
    text = s.funnel.format()
    assert "4 rows in" in text and "+1       kept:both" in text and "rows out: 2" in text
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["funnel"]["rows_out"] == 2


def test_selective_paper_keeps_every_complete_row(tmp_path: Path) -> None:
    s = select([_single_file(tmp_path)], tmp_path / "p.jsonl", method="selective-paper", run_dir=tmp_path / "run")
    out = _read(tmp_path / "p.jsonl")
    assert [r["instruction"] for r in out] == ["ins 0-both", "ins 1-response", "ins 2-instruction"]
    assert s.rows_out == 3 and s.funnel.stages[-1].outcomes["missing:both"] == 1


def test_selective_from_four_aligned_files_matched_by_id(tmp_path: Path) -> None:
    files = []
    for name in ("original", "instruction", "response", "both"):
        rows = [{**texts(f"{i}-{name}"), "reflectkit": {"id": f"row{i}", "score": s[name]}} for i, s in enumerate(SCORES[:3])]
        if name == "response":
            rows = rows[::-1][:-1]  # different order, and row0 missing (row0 does not need it)
        files.append(write_jsonl(tmp_path / f"{name}.jsonl", rows))
    s = select(files, tmp_path / "sel.jsonl", run_dir=tmp_path / "run")
    assert [r["output"] for r in _read(tmp_path / "sel.jsonl")] == ["out 0-both", "out 1-response"]
    assert s.funnel.stages[-1].outcomes["dropped:instruction-only"] == 1
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["variant_files_matched_by"] == ["reflectkit.id"] * 3
    # a variant file without the needed row -> dropped with the reason naming the file
    write_jsonl(tmp_path / "response.jsonl", [{**texts("x"), "reflectkit": {"id": "row0", "score": sc(0.1, 0.1)}}])
    s2 = select(files, tmp_path / "sel2.jsonl", run_dir=tmp_path / "run2")
    assert s2.funnel.stages[-1].outcomes["missing:response"] == 1
    assert "no row with id row1" in s2.funnel.stages[-1].reasons["missing:response"]


def _four_files(tmp_path: Path, *, ids: bool) -> list[Path]:
    files = []
    for name in ("original", "instruction", "response", "both"):
        rows = [{**texts(f"{i}-{name}"), "reflectkit": {**({"id": f"row{i}"} if ids else {}), "score": s[name]}}
                for i, s in enumerate(SCORES[:3])]
        files.append(write_jsonl(tmp_path / f"{name}.jsonl", rows))
    return files


def test_four_files_without_ids_are_matched_by_position(tmp_path: Path) -> None:
    """The released code's four files are aligned line by line; rows without reflectkit.id are matched so."""
    files = _four_files(tmp_path, ids=False)
    s = select(files, tmp_path / "sel.jsonl", run_dir=tmp_path / "run")
    assert [r["output"] for r in _read(tmp_path / "sel.jsonl")] == ["out 0-both", "out 1-response"]
    assert s.funnel.stages[-1].outcomes["dropped:instruction-only"] == 1
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["variant_files_matched_by"] == ["position"] * 3


@pytest.mark.parametrize("spoil,needle", [
    ("short", "3 rows, the original file has"),  # no ids and a row missing: positions cannot be trusted
    ("foreign", "none of its 3 row ids matches"),  # ids from another dataset
    ("duplicate", "appears on rows 1 and 2"),
    ("unscored", "has no reflectkit.score on any row"),
])
def test_four_files_that_cannot_be_aligned_are_user_errors(tmp_path: Path, spoil: str, needle: str, capsys) -> None:
    files = _four_files(tmp_path, ids=spoil != "short")
    rows = _read(files[2])
    if spoil == "short":
        rows = _read(files[0]) + [{**texts("extra"), "reflectkit": {"score": sc(0.1, 0.1)}}]
        write_jsonl(files[0], rows)
    elif spoil == "foreign":
        write_jsonl(files[2], [{**r, "reflectkit": {**r["reflectkit"], "id": "x" + r["reflectkit"]["id"]}} for r in rows])
    elif spoil == "duplicate":
        write_jsonl(files[2], [{**r, "reflectkit": {**r["reflectkit"], "id": "row0"}} for r in rows])
    else:
        write_jsonl(files[2], [{k: v for k, v in r.items() if k != "reflectkit"} for r in rows])
    code = main(["select", *map(str, files), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args,needle", [
    (["--method", "cherry", "--fraction", "0.5", "--key", "ifd_lss"], "score key 'ifd_lss' is not a number in any row"),
    (["--method", "filter", "--where", "coherance >= 0.5"], "numeric keys: coherence, ifd_loss, ifd_ppl"),
])
def test_select_on_a_key_no_row_has_is_a_user_error(tmp_path: Path, args: list[str], needle: str, capsys) -> None:
    src = write_jsonl(tmp_path / "s.jsonl", [{**texts("a"), "reflectkit": {"id": "a", "score": sc(0.5, 0.5)}}])
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r"), *args]) == 2
    assert needle in capsys.readouterr().err


def test_select_on_an_unscored_file_is_a_user_error(tmp_path: Path, capsys) -> None:
    src = write_jsonl(tmp_path / "s.jsonl", [texts("a"), texts("b")])
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--method", "cherry", "--count", "1",
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "no reflectkit.score on any row: run `reflectkit score`" in capsys.readouterr().err


def test_where_reads_booleans_as_0_and_1(tmp_path: Path) -> None:
    rows = [{**texts(str(i)), "reflectkit": {"id": f"r{i}", "score": sc(0.5, 0.5, truncated=t)}} for i, t in enumerate([False, True, False])]
    s = select([write_jsonl(tmp_path / "s.jsonl", rows)], tmp_path / "o.jsonl", method="filter", where="truncated == 0",
               run_dir=tmp_path / "run")
    assert [r["reflectkit"]["id"] for r in _read(tmp_path / "o.jsonl")] == ["r0", "r2"] and s.rows_out == 2


def test_funnel_json_to_an_unwritable_path_is_a_user_error(tmp_path: Path, capsys) -> None:
    src = write_jsonl(tmp_path / "s.jsonl", [{**texts("a"), "reflectkit": {"id": "a", "score": sc(0.5, 0.5)}}])
    code = main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--method", "filter", "--where", "ifd_ppl < 1",
                 "--run-dir", str(tmp_path / "r"), "--funnel-json", str(tmp_path / "no" / "such" / "dir" / "f.json"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--funnel-json" in err and "Traceback" not in err


def test_cherry_and_where_through_cli(tmp_path: Path, capsys) -> None:
    rows = [{**texts(str(i)), "reflectkit": {"id": f"r{i}", "score": sc(ifd, 0.5, coherence=coh)}}
            for i, (ifd, coh) in enumerate([(0.9, 0.9), (1.2, 0.9), (0.5, 0.9), (0.7, 0.1), (0.95, 0.9), (0.3, 0.9)])]
    rows.append({**texts("empty"), "reflectkit": {"id": "r6", "score": {"status": "skipped", "reason": "empty response"}}})
    src = write_jsonl(tmp_path / "s.jsonl", rows)
    code = main(["select", str(src), "-o", str(tmp_path / "c.jsonl"), "--method", "cherry", "--fraction", "0.5",
                 "--where", "coherence >= 0.5", "--run-dir", str(tmp_path / "run"), "--funnel-json", str(tmp_path / "f.json"), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "select (cherry): 7 rows in" in printed and "where coherence >= 0.5: 7 in -> 5 out" in printed
    # after where: 0.9, 1.2, 0.5, 0.95, 0.3 -> drop 1.2 -> 4 ranked -> keep top 2: 0.95, 0.9
    assert [r["reflectkit"]["id"] for r in _read(tmp_path / "c.jsonl")] == ["r0", "r4"]
    f = json.loads((tmp_path / "f.json").read_text())
    assert f["stages"][1]["outcomes"] == {"dropped:below-top": 2, "dropped:ifd>1": 1, "kept:top": 2}
    code = main(["select", str(src), "-o", str(tmp_path / "w.jsonl"), "--method", "filter", "--where", "ifd_ppl < 0.8",
                 "--where", "coherence > 0.5", "--run-dir", str(tmp_path / "run2"), "-q"])
    assert code == 0 and [r["reflectkit"]["id"] for r in _read(tmp_path / "w.jsonl")] == ["r2", "r5"]


@pytest.mark.parametrize("args,needle", [
    (["--method", "best"], "--method must be one of"),
    (["--method", "cherry"], "exactly one of --fraction or --count"),
    (["--method", "filter"], "needs at least one --where"),
    (["--where", "ifd ~ 1"], "expected 'KEY OP NUMBER'"),
    (["--fraction", "0.2"], "apply to --method cherry"),
])
def test_select_user_errors_exit_2(tmp_path: Path, args: list[str], needle: str, capsys) -> None:
    src = _single_file(tmp_path)
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r"), *args]) == 2
    assert needle in capsys.readouterr().err


def test_select_needs_one_or_four_files(tmp_path: Path, capsys) -> None:
    src = _single_file(tmp_path)
    assert main(["select", str(src), str(src), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "one input file or four" in capsys.readouterr().err


def test_selective_on_a_file_without_variants_is_a_user_error(tmp_path: Path, capsys) -> None:
    src = write_jsonl(tmp_path / "plain.jsonl", [{**texts("a"), "reflectkit": {"id": "a", "score": sc(0.5, 0.5)}}])
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "no row of the input has reflectkit.score.variants" in capsys.readouterr().err

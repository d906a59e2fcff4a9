"""Issue 19 items 13 and 14: text from files is data. A trace's @model, its tensor names and the
file's own name may hold terminal escapes (ESC [, OSC), C0/C1 controls, DEL and bytes that are
not UTF-8: the text and CSV outputs, figure titles and error messages show them escaped
(tools/fpscope/text.hpp printable), never raw; JSON keeps its own escaping; CSV is RFC 4180."""
import csv
import io
import json
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import write_trace

HOSTILE = "\x1b]0;owned\x07\x1b[31mred\x7f\u009b2J\ttab"  # OSC title, CSI colour, DEL, C1 CSI, tab
NAMES = {
    "esc": HOSTILE,
    "quote": 'a "quoted", name',
    "bytes": b"raw\xff\xfe\x1b[1m",  # not UTF-8, with an escape
}


def inert(out: bytes):
    """Printable text: valid UTF-8, no control character but the line break, no DEL, no C1."""
    text = out.decode("utf-8")  # raises on invalid UTF-8
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, f"raw control characters {bad!r} in {text[:400]!r}"
    return text


@pytest.fixture
def trace(tmp_path):
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    tensors = {NAMES["esc"]: x, NAMES["quote"]: x * 2, NAMES["bytes"]: x * 3}
    # The file's own name is hostile too: it is printed as the report's heading.
    path = tmp_path / "run\x1b[2J.h5"
    return write_trace(path, [{"tensors": tensors}, {"tensors": tensors}], model=b"model \x1b]0;x\x07 \xff\x9b end")


def run(fpscope, *args):
    return subprocess.run([fpscope.path, *map(str, args)], capture_output=True, timeout=300)


@pytest.mark.parametrize("mode", [[], ["--csv"]])
@pytest.mark.parametrize("command", [["replay", "-P", "static:1e30"], ["hist"]])
def test_text_and_csv_show_file_text_escaped(fpscope, trace, command, mode):
    p = run(fpscope, command[0], trace, *command[1:], *mode)
    assert p.returncode == 0, p.stderr
    text = inert(p.stdout)
    inert(p.stderr)
    # Escaped, not dropped: the names can still be told apart and read.
    assert "\\x1b]0;owned\\x07" in text and "\\u009b2J" in text and "\\x7f" in text, text[:2000]
    assert "raw\\xff\\xfe\\x1b[1m" in text, text[:2000]
    if command[0] == "replay" and not mode:  # the heading: the path and the model
        assert "run\\x1b[2J.h5: model \\x1b]0;x\\x07 \\xff\\xc2" not in text  # bytes are escaped one by one
        assert "run\\x1b[2J.h5: model \\x1b]0;x\\x07 \\xff\\x9b end" in text, text[:300]


@pytest.mark.parametrize("command", [["replay", "-P", "static:1e30"], ["hist"]])
def test_csv_is_rfc4180(fpscope, trace, command):
    p = run(fpscope, command[0], trace, *command[1:], "--csv")
    assert p.returncode == 0, p.stderr
    rows = list(csv.reader(io.StringIO(inert(p.stdout), newline="")))
    width = len(rows[0])
    assert len(rows) > 3 and all(len(r) == width for r in rows), rows
    column = rows[0].index("tensor") if "tensor" in rows[0] else rows[0].index("input")
    names = {r[column] for r in rows[1:]}
    # The quote is doubled inside a quoted field: the name reads back whole.
    assert any(n.endswith(NAMES["quote"]) for n in names), names
    assert '""quoted"", name"' in p.stdout.decode()


@pytest.mark.parametrize("command", [["replay", "-P", "static:1e30", "--json"], ["hist", "--json"]])
def test_json_keeps_its_own_escaping(fpscope, trace, command):
    p = run(fpscope, command[0], trace, *command[1:])
    assert p.returncode == 0, p.stderr
    inert(p.stdout)  # JSON's \u001b escapes
    j = json.loads(p.stdout)
    text = json.dumps(j)
    if command[0] == "replay":
        names = {t["name"] for s in j["steps"] for t in s["tensors"]}
        assert NAMES["esc"] in names and NAMES["quote"] in names, names
        assert "raw\ufffd\ufffd\x1b[1m" in names, names  # invalid UTF-8: U+FFFD, not an exception
        assert j["model"] == "model \x1b]0;x\x07 \ufffd\ufffd end"
    else:
        assert HOSTILE in text or json.dumps(HOSTILE)[1:-1] in text


def test_figure_titles_are_escaped(fpscope, trace, tmp_path):
    # Cairo draws a title as glyph outlines: the figure of the hostile file must be the figure of
    # the same trace under the escaped name, "run\\x1b[2J.h5" literally.
    tame = tmp_path / "run\\x1b[2J.h5"
    tame.write_bytes(trace.read_bytes())
    for command in (["replay", "-P", "static:1e30"], ["hist"]):
        figures = []
        for path in (trace, tame):
            svg = tmp_path / f"{command[0]}-{len(figures)}.svg"
            p = run(fpscope, command[0], path, *command[1:], "--plot", svg)
            assert p.returncode == 0, p.stderr
            ET.fromstring(svg.read_bytes())  # well-formed XML
            figures.append(svg.read_bytes())
        assert figures[0] == figures[1], command


def test_error_messages_quote_file_text_escaped(fpscope, tmp_path):
    import h5py
    path = write_trace(tmp_path / "t.h5", [{}])
    with h5py.File(path, "a") as f:
        f["steps/00000000/tensors/w"].attrs["dtype"] = np.bytes_(b"\x1b]0;owned\x07\xff")
    p = run(fpscope, "replay", path)
    assert p.returncode == 1
    err = inert(p.stderr)
    assert err.count("\n") == 1 and err.startswith("fpscope: error: "), err
    assert "unknown dtype '\\x1b]0;owned\\x07\\xff'" in err, err


def test_paths_printed_by_dot_and_convert_are_escaped(fpscope, tmp_path):
    """dot's heading and convert -v's summary print the paths they were given."""
    a = tmp_path / "a\x1b[2J\x1b]0;owned\x07.npy"
    np.save(a, np.ones(4, np.float32))
    p = run(fpscope, "dot", a, a, "-f", "fp16")
    assert p.returncode == 0, p.stderr
    assert inert(p.stdout).count("a\\x1b[2J\\x1b]0;owned\\x07.npy") == 2
    p = run(fpscope, "convert", a, "--to", "e4m3", "-o", tmp_path / "out\x1b[31m.npy", "-v")
    assert p.returncode == 0, p.stderr
    assert "out\\x1b[31m.npy" in inert(p.stdout)
